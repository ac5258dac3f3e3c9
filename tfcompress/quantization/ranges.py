"""Quantization-range arithmetic, backend-agnostic (`keras.ops` only)."""

from keras import ops


def reduce_range(x, per_axis=False, axis=-1):
    """Min and max of `x`, over everything or per slice along `axis`.

    Args:
        x: a float tensor.
        per_axis: reduce all axes but `axis` when True.
        axis: the channel axis kept by per-axis reduction.

    Returns:
        `(min, max)`: scalars, or vectors of length `x.shape[axis]`.
    """
    if not per_axis:
        return ops.min(x), ops.max(x)
    axis = axis % len(x.shape)
    reduce_axes = tuple(i for i in range(len(x.shape)) if i != axis)
    return ops.min(x, axis=reduce_axes), ops.max(x, axis=reduce_axes)


def fit_range(range_min, range_max, symmetric):
    """Makes `[min, max]` contain zero, and symmetric about it if asked.

    Fake quantization needs zero exactly representable; TFLite int8 weights
    need `min == -max` (zero point 0).
    """
    range_min = ops.minimum(range_min, 0.0)
    range_max = ops.maximum(range_max, 0.0)
    if symmetric:
        bound = ops.maximum(-range_min, range_max)
        return -bound, bound
    return range_min, range_max


def moving_average(old, new, decay, initialized):
    """`decay * old + (1 - decay) * new`, or `new` before the first update."""
    averaged = old * decay + new * (1.0 - decay)
    return ops.where(initialized > 0.5, averaged, new)
