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

    BN statistics are frozen at the float model's moving mean and variance
    (TFMOT's behaviour after `freeze_bn_delay`; QAT fine-tunes a trained
    model, where batch statistics add noise, not information); `gamma` and
    `beta` stay trainable. Training and inference therefore compute the same
    function. The BatchNormalization layer itself is replaced by an identity.

    Args:
        layer: a built Conv1D/Conv2D/DepthwiseConv2D/Dense with linear activation.
        quantize_config: its `QuantizeConfig`.
        epsilon: the BatchNormalization's epsilon.
        input_quantizer, preserve_sparsity, **kwargs: as `QuantizeWrapper`.
    """

    def __init__(self, layer, quantize_config, epsilon=1e-3, input_quantizer=None, preserve_sparsity=False, **kwargs):
        if keras.activations.serialize(getattr(layer, "activation", None) or keras.activations.linear) != "linear":
            raise ValueError(
                f"Can only fold BatchNormalization into a layer with a linear activation; "
                f"{layer.name!r} has activation={layer.activation!r}. Move the activation after the BN."
            )
        super().__init__(layer, quantize_config, input_quantizer, preserve_sparsity, **kwargs)
        self.epsilon = float(epsilon)

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
            setattr(self, name, self.add_weight(name=name, shape=(channels,), initializer=init, trainable=trainable))
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

    def postprocess(self, outputs):
        return outputs if self.layer.use_bias else outputs + self.folded_bias()

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
