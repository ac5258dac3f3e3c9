"""Dense/EinsumDense on >2-D inputs as one 2-D matmul the converter makes int8.

`Dense` on a (batch, seq, features) input is a 3-D `matmul`, and an
`EinsumDense` such as MultiHeadAttention's query ("abc,cde->abde") an einsum;
the TFLite converter lowers both to RESHAPE -> FULLY_CONNECTED -> RESHAPE and
adds the bias *after* the last RESHAPE, where it cannot fuse it into the
FULLY_CONNECTED. The fake quantizer after the bias add then gives the
FULLY_CONNECTED's output no range, and the converter leaves it float with
dequantized int8 weights (seen on the pretrained MiniLM: 30 of 36 matmuls
float, 44 MB instead of ~23 MB). Zero biases (a freshly built model) are
folded away, which is why small random models did not show it.

Computing the layer as `reshape(x, (-1, in)) @ reshape(kernel, (in, out)) +
bias` then reshaping back gives the converter the FULLY_CONNECTED + ADD
pattern it fuses; the result is the same function.
"""

import math
from typing import NamedTuple, Optional

import keras
import numpy as np
from keras import ops


class FlatSpec(NamedTuple):
    """How a layer runs flat: `prefix_rank` leading input axes are kept,
    the kernel maps `in_shape` (contracted) to `out_shape`."""

    prefix_rank: int
    in_shape: tuple
    out_shape: tuple

    @property
    def in_size(self):
        return math.prod(self.in_shape)

    @property
    def out_size(self):
        return math.prod(self.out_shape)


class SplitWeights(NamedTuple):
    """A flat matmul's weights split into ordinary and outlier output channels."""

    rest_kernel: object
    rest_bias: Optional[object]
    outlier_kernel: object
    outlier_bias: Optional[object]


def _einsum_spec(layer):
    equation = layer.equation
    if "..." in equation or "->" not in equation:
        return None
    inputs, output = equation.split("->")
    if inputs.count(",") != 1:
        return None
    x_axes, k_axes = inputs.split(",")
    contracted = [c for c in x_axes if c in k_axes and c not in output]
    free = [c for c in k_axes if c in output and c not in x_axes]
    prefix = x_axes[: len(x_axes) - len(contracted)]
    if (
        len(set(equation) - set(",->")) != len(x_axes) + len(free)  # every letter is one of these
        or x_axes != prefix + "".join(contracted)
        or k_axes != "".join(contracted) + "".join(free)
        or output != prefix + "".join(free)
        or any(c in k_axes for c in prefix)
    ):
        return None
    kernel_shape = tuple(layer.kernel.shape)
    n_in = len(contracted)
    return FlatSpec(len(prefix), kernel_shape[:n_in], kernel_shape[n_in:])


def flat_matmul_spec(layer, input_shape):
    """The `FlatSpec` of `layer` when it can run flattened.

    Only for exactly `Dense`/`EinsumDense` (no subclass, LoRA or Keras
    quantization), in float, on inputs of rank > 2; None otherwise.
    """
    if type(layer) not in (keras.layers.Dense, keras.layers.EinsumDense):
        return None
    if (
        getattr(layer, "lora_enabled", False)
        or getattr(layer, "quantization_mode", None) is not None
    ):
        return None
    if layer.compute_dtype != layer.variable_dtype:
        return None
    if input_shape is None or len(input_shape) <= 2:
        return None
    if type(layer) is keras.layers.Dense:
        kernel_shape = tuple(layer.kernel.shape)
        spec = FlatSpec(len(input_shape) - 1, kernel_shape[:1], kernel_shape[1:])
    else:
        spec = _einsum_spec(layer)
        if spec is None or spec.prefix_rank + len(spec.in_shape) != len(input_shape):
            return None
    if layer.bias is not None and len(layer.bias.shape) > len(spec.out_shape):
        return None  # a bias over the batch/sequence axes does not fit the FC
    return spec


def flat_bias(bias, out_shape):
    """The bias as one vector over the flattened output channels."""
    return ops.reshape(ops.broadcast_to(bias, out_shape), (math.prod(out_shape),))


# Activations TFLite fuses into FULLY_CONNECTED: the output quantizer after
# them gives the matmul its range. Any other activation (gelu, tanh...) is a
# separate op, so the matmul output needs a quantizer of its own.
_FUSED_ACTIVATIONS = ("linear", "relu", "relu6")


def _activation_name(layer):
    activation = keras.activations.serialize(
        getattr(layer, "activation", None) or keras.activations.linear
    )
    return activation if isinstance(activation, str) else None


def fused_activation(layer):
    """Whether TFLite fuses the layer's activation (none, ReLU, ReLU6) into
    its FULLY_CONNECTED."""
    return _activation_name(layer) in _FUSED_ACTIVATIONS


def linear(layer):
    """Whether the layer has no activation (identity)."""
    return _activation_name(layer) == "linear"


def splittable(layer):
    """Whether the output can be split for outlier channels.

    The split adds the two int8 halves in float, so the layer must have no
    activation, or one TFLite does not fuse anyway (GELU), which then runs
    in float on the sum. A ReLU would lose its fusion.
    """
    return linear(layer) or not fused_activation(layer)


def _function_name(activation):
    return getattr(activation, "__name__", "") or ""


# Below this, GELU (exact or tanh) is within 1.5e-4 of 0: the int8 range of
# its input needs no levels there (the pretrained MiniLM's FFN matmuls reach
# -17 while their 99.99th percentile is 4).
_GELU_FLOOR = -4.0


def activation_input_floor(layer):
    """The lowest input value the layer's activation distinguishes, or None."""
    activation = getattr(layer, "activation", None)
    return _GELU_FLOOR if "gelu" in _function_name(activation).lower() else None


def outlier_split(spec, kernel, bias, channels):
    """Splits a flat matmul's weights into ordinary and outlier channels.

    Args:
        spec: `flat_matmul_spec` of the layer.
        kernel: the (fake-quantizable) kernel tensor, the layer's shape or 2-D.
        bias: the bias tensor or None.
        channels: sorted flat output indices of the outlier channels.

    Returns:
        `SplitWeights(rest_kernel, rest_bias, outlier_kernel, outlier_bias)`: `rest_*`
        keep every output with the outlier columns zeroed (their output is
        exactly 0, so the int8 range covers the ordinary channels only);
        `outlier_*` compute the outlier channels alone (`scatter_channels`
        puts them back).
    """
    _, in_shape, out_shape = spec
    in_size, out_size = math.prod(in_shape), math.prod(out_shape)
    channels = list(channels)
    keep = np.ones((out_size,), "float32")
    keep[channels] = 0.0
    kernel = ops.reshape(kernel, (in_size, out_size))
    rest_bias = outlier_bias = None
    if bias is not None:
        bias = flat_bias(bias, out_shape)
        rest_bias = bias * keep
        outlier_bias = ops.take(bias, channels, axis=0)
    return SplitWeights(kernel * keep, rest_bias, ops.take(kernel, channels, axis=1), outlier_bias)


def gather_channels(values, channels):
    """`values[:, channels]` as slices and a concatenation, both of which
    XNNPack runs (it does not take GATHER)."""
    parts = [values[:, channel : channel + 1] for channel in channels]
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)


def scatter_channels(values, channels, size):
    """`(n, len(channels))` -> `(n, size)` with zeros outside `channels`.

    One slice and one zero PAD per channel: XNNPack runs both on int8, while
    a GATHER would leave it (measured +1 ms on MiniLM from the 6 extra
    delegate partitions).
    """
    parts = [
        ops.pad(values[:, j : j + 1], [[0, 0], [channel, size - 1 - channel]])
        for j, channel in enumerate(channels)
    ]
    return sum(parts[1:], parts[0])


def flat_inputs(layer, spec, inputs):
    """`(inputs as (-1, in_size), leading dims)` for a flat matmul."""
    prefix_rank, in_shape, _ = spec
    x = ops.cast(inputs, layer.compute_dtype)
    lead = tuple(x.shape[:prefix_rank])
    if sum(d is None for d in lead) <= 1:
        # Static dims and one -1: no SHAPE/STRIDED_SLICE/PACK ops in TFLite,
        # which XNNPack does not take and which split its partitions.
        lead = tuple(-1 if d is None else d for d in lead)
    else:
        lead = tuple(ops.shape(x)[:prefix_rank])
    return ops.reshape(x, (-1, math.prod(in_shape))), lead
