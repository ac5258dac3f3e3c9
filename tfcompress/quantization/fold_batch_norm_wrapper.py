"""QAT of a Conv/Dense with the BatchNormalization after it folded in."""

import math

import keras
from keras import ops

from tfcompress.quantization.layer_call_plans import FoldBatchNorm
from tfcompress.quantization.quantize_wrapper import QuantizeWrapper

_BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


@keras.saving.register_keras_serializable(package="tfcompress")
class FoldBatchNormQuantizeWrapper(QuantizeWrapper):
    """Runs `layer` with the following BatchNormalization folded into it.

    The TFLite converter folds BN into the conv's kernel and bias before
    quantizing, so the shipped int8 kernel is `kernel * gamma / sqrt(var +
    eps)`. This wrapper fake-quantizes exactly that folded kernel and adds
    the folded bias, so the ranges learned in QAT are the shipped ones.

    The forward pass always normalizes with the moving mean and variance (as
    after TFMOT's `freeze_bn_delay`), so training and inference compute the
    same function and the ranges learned are the shipped ones; `gamma` and
    `beta` stay trainable. With `update_statistics`, training still refreshes
    the moving statistics from each batch, recovered from the folded output
    (`conv(x, W * f) = f * conv(x, W)`) without a second convolution, so a
    float model with stale statistics is corrected during QAT. The
    BatchNormalization layer itself is replaced by an identity.

    Args:
        layer: a built Conv1D/Conv2D/DepthwiseConv2D/Dense with linear activation.
        quantize_config: its `QuantizeConfig`.
        epsilon: the BatchNormalization's epsilon.
        momentum: the BatchNormalization's momentum for the moving statistics.
        update_statistics: refresh the moving statistics in training.
        input_quantizer, preserve_sparsity, **kwargs: as `QuantizeWrapper`.
    """

    def __init__(
        self,
        layer,
        quantize_config,
        epsilon=1e-3,
        momentum=0.99,
        update_statistics=True,
        input_quantizer=None,
        preserve_sparsity=False,
        **kwargs,
    ):
        if (
            keras.activations.serialize(
                getattr(layer, "activation", None) or keras.activations.linear
            )
            != "linear"
        ):
            raise ValueError(
                f"Can only fold BatchNormalization into a layer with a linear activation; "
                f"{layer.name!r} has activation={layer.activation!r}. Move the activation after the BN."
            )
        super().__init__(layer, quantize_config, input_quantizer, preserve_sparsity, **kwargs)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.update_statistics = bool(update_statistics)

    def choose_plan(self):
        """Always the layer's own call, with the folded kernel and bias."""
        return FoldBatchNorm(self)

    def build_wrapper(self):
        kernel = self.layer.kernel
        depthwise = isinstance(self.layer, keras.layers.DepthwiseConv2D)
        self.factor_shape = tuple(kernel.shape[-2:]) if depthwise else (kernel.shape[-1],)
        channels = math.prod(self.factor_shape)
        inits = ("ones", "zeros", "zeros", "ones")
        for name, init in zip(_BN_VARIABLES, inits):
            trainable = name in ("gamma", "beta")
            variable = self.add_weight(
                name=name,
                shape=(channels,),
                initializer=init,
                trainable=trainable,
                aggregation="mean",
            )
            setattr(self, name, variable)
        super().build_wrapper()

    def set_batch_norm(self, batch_norm):
        """Copies gamma/beta/moving stats from a BatchNormalization layer."""
        for name, init in zip(_BN_VARIABLES, (1.0, 0.0, None, None)):
            source = getattr(batch_norm, name, None)
            value = source if source is not None else ops.full(self.gamma.shape, init)
            getattr(self, name).assign(value)
        self.calibrate_weights()

    def folded_bias(self):
        """The bias of the layer with the BatchNormalization folded in."""
        return self.plan.folded_bias()

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "momentum": self.momentum,
            "update_statistics": self.update_statistics,
        }
