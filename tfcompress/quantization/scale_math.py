"""The per-channel scale and folding maths of `QuantizeWrapper`'s plans.

Pure `keras.ops` functions of tensors and shapes (no layers, no variables
created), so each runs on any backend and is tested on its own.
"""

import numpy as np
from keras import ops

from tfcompress.quantization.flat_matmul import flat_bias


def scale_input(inputs, input_scale, in_shape):
    """`inputs / input_scale` over the flat input channels (SmoothQuant).

    A multiplication by the reciprocal: one MUL in TFLite, not a DIV.
    """
    return ops.multiply(inputs, ops.reshape(ops.reciprocal(input_scale), in_shape))


def unscale_output(outputs, output_scale, out_shape):
    """The quantized matmul output times `output_scale` (one float MUL)."""
    return ops.multiply(outputs, ops.reshape(output_scale, out_shape))


def scale_kernel(kernel, in_shape, out_shape, input_scale=None, output_scale=None):
    """The kernel with its rows times `input_scale` and its columns divided
    by `output_scale`, so the scaled matmul computes the same function."""
    value = ops.convert_to_tensor(kernel)
    if input_scale is not None:
        value = value * ops.reshape(input_scale, tuple(in_shape) + (1,) * len(out_shape))
    if output_scale is not None:
        value = value / ops.reshape(output_scale, (1,) * len(in_shape) + tuple(out_shape))
    return value


def scale_flat_bias(bias, out_shape, output_scale=None):
    """`bias` (or None) as one vector over the flat output channels, divided
    by `output_scale` as the kernel columns are."""
    if bias is None:
        return None
    if output_scale is not None:
        bias = bias / ops.reshape(output_scale, ops.shape(bias))
    return flat_bias(bias, out_shape)


def channel_keep(size, channels):
    """A float32 vector of `size` ones with zeros at `channels`."""
    keep = np.ones((size,), "float32")
    keep[list(channels)] = 0.0
    return keep


def embedding_channel_scales(table):
    """Per embedding dimension: its largest |value| over the table's (no gradient)."""
    table = ops.convert_to_tensor(table)
    span = ops.max(ops.abs(table), axis=0)
    peak = ops.max(span)
    return ops.stop_gradient(ops.maximum(span, peak * 1e-6 + 1e-30) / (peak + 1e-30))


def fold_factor(gamma, moving_variance, epsilon):
    """The BatchNormalization scale folded into the kernel: `gamma / sqrt(var + eps)`."""
    return gamma * ops.rsqrt(moving_variance + epsilon)


def fold_bias(beta, moving_mean, factor, bias=0.0):
    """The bias of the layer with its BatchNormalization folded in."""
    return beta + (bias - moving_mean) * factor


def batch_statistics(folded, factor, bias=0.0):
    """`(mean, variance)` of the unfolded output per channel, recovered from
    the folded output without a second matmul (`conv(x, W * f) = f * conv(x, W)`).

    Args:
        folded: the folded output without its bias, `(..., channels)`.
        factor: `fold_factor` per channel.
        bias: the layer's own bias (0 without one).

    Returns:
        `(mean, variance)` per channel, with no gradient.
    """
    folded = ops.reshape(ops.stop_gradient(folded), (-1, factor.shape[0]))
    factor = ops.stop_gradient(factor)
    factor = ops.where(ops.abs(factor) < 1e-12, 1e-12, factor)
    mean = ops.mean(folded, axis=0) / factor + bias
    variance = ops.var(folded, axis=0) / ops.square(factor)
    return mean, variance
