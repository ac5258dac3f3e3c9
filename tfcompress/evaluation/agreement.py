"""How often two models pick the same class."""

import numpy as np


def agreement(a, b, mask=None):
    """Fraction of positions where `argmax(a)` equals `argmax(b)` on the last axis.

    Labels are not needed: this compares a compressed model's predictions with
    the original's, e.g. fp32 logits against int8 LiteRT logits.

    Args:
        a: scores (logits or probabilities), shape `[..., num_classes]`.
        b: scores of the same shape.
        mask: optional array shaped like `a` without its last axis; only
            positions where it is nonzero count (e.g. a token padding mask).

    Returns:
        The agreement as a float in [0, 1].

    Raises:
        ValueError: when the shapes differ or the mask selects nothing.

    Example:

    ```python
    tfcompress.evaluation.agreement(fp32_logits, int8_logits)
    ```
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(
            "`a` and `b` must be score arrays of the same shape, classes on the "
            f"last axis. Received: a.shape={a.shape}, b.shape={b.shape}."
        )
    same = np.argmax(a, axis=-1) == np.argmax(b, axis=-1)
    if mask is None:
        return float(np.mean(same))
    mask = np.asarray(mask)
    if mask.shape != same.shape:
        raise ValueError(
            f"`mask` must have shape {same.shape} (the scores without their class "
            f"axis). Received: mask.shape={mask.shape}."
        )
    selected = mask != 0
    if not selected.any():
        raise ValueError("`mask` is all zeros, so there is nothing to compare.")
    return float(np.mean(same[selected]))
