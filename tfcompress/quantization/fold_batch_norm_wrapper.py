"""QAT of a Conv/Dense with the BatchNormalization after it folded in."""

import keras
from keras import ops

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

    _flatten_matmul = False  # the layer's own call, with the folded kernel

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
        if keras.activations.serialize(getattr(layer, "activation", None) or keras.activations.linear) != "linear":
            raise ValueError(
                f"Can only fold BatchNormalization into a layer with a linear activation; "
                f"{layer.name!r} has activation={layer.activation!r}. Move the activation after the BN."
            )
        super().__init__(layer, quantize_config, input_quantizer, preserve_sparsity, **kwargs)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.update_statistics = bool(update_statistics)

    def build_wrapper(self):
        kernel = self.layer.kernel
        depthwise = isinstance(self.layer, keras.layers.DepthwiseConv2D)
        self._factor_shape = tuple(kernel.shape[-2:]) if depthwise else (kernel.shape[-1],)
        channels = 1
        for size in self._factor_shape:
            channels *= size
        inits = ("ones", "zeros", "zeros", "ones")
        for name, init in zip(_BN_VARIABLES, inits):
            trainable = name in ("gamma", "beta")
            variable = self.add_weight(
                name=name, shape=(channels,), initializer=init, trainable=trainable, aggregation="mean"
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

    def _factor(self):
        return self.gamma * ops.rsqrt(self.moving_variance + self.epsilon)

    def folded_bias(self):
        bias = self.layer.bias if self.layer.use_bias else 0.0
        return self.beta + (bias - self.moving_mean) * self._factor()

    def weight_tensor(self, variable):
        if variable is self.layer.kernel:
            return variable * ops.reshape(self._factor(), self._factor_shape)
        return ops.convert_to_tensor(variable)

    def substitutions(self, training):
        pairs = super().substitutions(training)
        if self.layer.use_bias:
            pairs.append((self.layer.bias, self.folded_bias()))
        return pairs

    def postprocess(self, outputs, training):
        if training and self.update_statistics:
            self._update_statistics(outputs)
        return outputs if self.layer.use_bias else outputs + self.folded_bias()

    def _update_statistics(self, outputs):
        folded = ops.stop_gradient(outputs - self.folded_bias() if self.layer.use_bias else outputs)
        folded = ops.reshape(folded, (-1, self.gamma.shape[0]))
        factor = ops.stop_gradient(self._factor())
        factor = ops.where(ops.abs(factor) < 1e-12, 1e-12, factor)
        bias = self.layer.bias if self.layer.use_bias else 0.0
        mean = ops.mean(folded, axis=0) / factor + bias
        variance = ops.var(folded, axis=0) / ops.square(factor)
        keep = self.momentum
        self.moving_mean.assign(self.moving_mean * keep + mean * (1.0 - keep))
        self.moving_variance.assign(self.moving_variance * keep + variance * (1.0 - keep))

    def get_config(self):
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "momentum": self.momentum,
            "update_statistics": self.update_statistics,
        }
