"""`QuantizeWrapper` plans that run the wrapped layer's own call.

A plan is how a wrapper computes its layer once the quantizers exist: which
float tensor each weight is fake-quantized from (`weight_tensor`), what is
substituted for the variables, and the call itself. `QuantizeWrapper.build`
picks one: `LayerCall` by default, `ChannelScaledEmbedding` for an Embedding
read in float, `FoldBatchNorm` for a layer with its BatchNormalization
folded in, or `FlatMatmul` (see `flat_matmul_plan`) for a Dense/EinsumDense
on inputs of rank > 2.
"""

from typing import NamedTuple, Optional

from keras import ops

from tfcompress.core.wrapper import CompressionWrapper
from tfcompress.quantization import scale_math


class Quantized(NamedTuple):
    """A quantizer and the range variables it built on the wrapper."""

    quantizer: object
    variables: dict

    def __call__(self, values, training):
        return self.quantizer(values, training, self.variables)

    def update_range(self, values):
        self.quantizer.update_range(values, self.variables)


class QuantizedWeight(NamedTuple):
    """One weight of the wrapped layer, its quantizer, ranges and sparsity mask."""

    variable: object
    quantizer: object
    variables: dict
    mask: Optional[object]

    @property
    def quantized(self):
        return Quantized(self.quantizer, self.variables)

    def masked(self, value):
        return value if self.mask is None else value * self.mask


def refuse(name, layer, problem, received):
    raise ValueError(
        f"`{name}` cannot be used on layer {layer.name!r}: {problem}. "
        f"Received: {name}={received!r}. Leave it out for this layer."
    )


def factors_repr(values):
    """How refusals show `True` or a factor vector."""
    return "True" if values is True else f"<{values.shape[0]} factors>"


_NOT_FLAT = "it only applies to a Dense/EinsumDense run on inputs of rank > 2"


class LayerCall:
    """The wrapped layer's own call with its weights fake-quantized, then
    the output quantizers.

    Args:
        wrapper: the `QuantizeWrapper` being built (its quantizers exist).
    """

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def build(self):
        """Refuses the options that need a flat matmul; creates no variable."""
        wrapper = self.wrapper
        for name in ("outlier_channels", "input_outlier_channels"):
            if getattr(wrapper, name):
                refuse(name, wrapper.layer, _NOT_FLAT, getattr(wrapper, name))
        for name, values in (
            ("input_scale", wrapper.input_scale_values),
            ("output_scale", wrapper.output_scale_values),
        ):
            if values is not None:
                refuse(name, wrapper.layer, _NOT_FLAT, factors_repr(values))

    def own_weights(self):
        """Weights this plan quantizes itself instead of by substitution."""
        return ()

    def weight_tensor(self, variable):
        return ops.convert_to_tensor(variable)

    def _substituted(self):
        own = {id(weight) for weight in self.own_weights()}
        return [weight for weight in self.wrapper.quantized_weights if id(weight) not in own]

    def calibrate(self):
        """Sets the weight ranges from the current weights."""
        for weight in self._substituted():
            weight.quantizer.update_range(
                weight.masked(self.weight_tensor(weight.variable)), weight.variables
            )

    def substitutions(self, training):
        pairs = []
        for weight in self._substituted():
            value = weight.masked(self.weight_tensor(weight.variable))
            pairs.append((weight.variable, weight.quantizer(value, training, weight.variables)))
        return pairs

    def inner_call(self, inputs, args, kwargs):
        return CompressionWrapper.call(self.wrapper, inputs, *args, **kwargs)

    def postprocess(self, outputs, training):
        """Between the inner call and the output quantizers."""
        return outputs

    def call(self, inputs, args, kwargs, training):
        outputs = self.inner_call(inputs, args, dict(kwargs, training=training))
        outputs = self.postprocess(outputs, training)
        return self.wrapper.quantize_outputs(outputs, training)


class ChannelScaledEmbedding(LayerCall):
    """An Embedding whose table is quantized with one scale per dimension.

    The table is quantized with each dimension divided by its scale, and the
    gathered rows are multiplied back (one float MUL in TFLite); a
    `ReversibleEmbedding`'s reverse matmul multiplies its input instead.
    """

    def weight_tensor(self, variable):
        layer = self.wrapper.layer
        if variable is layer.embeddings:
            return variable / scale_math.embedding_channel_scales(layer.embeddings)
        return super().weight_tensor(variable)

    def inner_call(self, inputs, args, kwargs):
        scales = scale_math.embedding_channel_scales(self.wrapper.layer.embeddings)
        if kwargs.get("reverse"):
            return super().inner_call(ops.multiply(inputs, scales), args, kwargs)
        return ops.multiply(super().inner_call(inputs, args, kwargs), scales)


class FoldBatchNorm(LayerCall):
    """The layer's own call with the BatchNormalization after it folded in.

    The kernel read is `kernel * gamma / sqrt(var + eps)` and the bias the
    folded one (see `FoldBatchNormQuantizeWrapper`, which holds the
    BatchNormalization variables).
    """

    def factor(self):
        wrapper = self.wrapper
        return scale_math.fold_factor(wrapper.gamma, wrapper.moving_variance, wrapper.epsilon)

    def _bias(self):
        layer = self.wrapper.layer
        return layer.bias if layer.use_bias else 0.0

    def folded_bias(self):
        wrapper = self.wrapper
        return scale_math.fold_bias(wrapper.beta, wrapper.moving_mean, self.factor(), self._bias())

    def weight_tensor(self, variable):
        if variable is self.wrapper.layer.kernel:
            return variable * ops.reshape(self.factor(), self.wrapper.factor_shape)
        return super().weight_tensor(variable)

    def substitutions(self, training):
        pairs = super().substitutions(training)
        if self.wrapper.layer.use_bias:
            pairs.append((self.wrapper.layer.bias, self.folded_bias()))
        return pairs

    def postprocess(self, outputs, training):
        wrapper = self.wrapper
        if training and wrapper.update_statistics:
            folded = outputs - self.folded_bias() if wrapper.layer.use_bias else outputs
            mean, variance = scale_math.batch_statistics(folded, self.factor(), self._bias())
            keep = wrapper.momentum
            wrapper.moving_mean.assign(wrapper.moving_mean * keep + mean * (1.0 - keep))
            wrapper.moving_variance.assign(wrapper.moving_variance * keep + variance * (1.0 - keep))
        return outputs if wrapper.layer.use_bias else outputs + self.folded_bias()
