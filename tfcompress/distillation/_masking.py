"""Masked averages shared by the distillation losses."""

import keras
from keras import ops


def masked_mean(values, mask=None):
    """Mean of `values` over the positions `mask` weights (all when None).

    `mask` holds the leading dimensions of `values` (`(batch,)` per example,
    `(batch, seq)` per token) or all of them. Extra trailing mask dimensions
    (a token mask against one value per sequence) count a row once if any of
    its positions is real. A mask with no real position gives 0, not NaN, so
    an all-padding batch does not poison training.
    """
    values = ops.cast(values, "float32")
    if mask is None:
        return ops.mean(values)
    mask = ops.cast(mask, "float32")
    while len(mask.shape) > len(values.shape):
        mask = ops.max(mask, axis=-1)
    while len(mask.shape) < len(values.shape):
        mask = ops.expand_dims(mask, -1)
    mask = ops.broadcast_to(mask, ops.shape(values))
    return ops.divide_no_nan(ops.sum(values * mask), ops.sum(mask))


def check_mask(mask, arg_name="mask"):
    """Raises unless `mask` is None or a tensor-like Keras can convert."""
    if mask is None:
        return None
    if not (keras.ops.is_tensor(mask) or hasattr(mask, "shape")):
        raise TypeError(
            f"`{arg_name}` must be a tensor or array of 0/1 weights shaped like "
            f"the leading dimensions of the logits. Received: {arg_name}={mask!r}."
        )
    return mask
