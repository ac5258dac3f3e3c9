"""Losses between hidden states: MSE, cosine distance, relations or your own."""

from keras import ops

from tfcompress.distillation._masking import check_mask, masked_mean
from tfcompress.distillation.relation_loss import relation_loss

# Position-wise distances: they need equal widths (a projection otherwise).
DISTANCES = ("mse", "cosine")
FEATURE_LOSSES = DISTANCES + ("relation",)


def check_feature_loss(loss, arg_name="loss", extra=()):
    """Returns `loss` if it names a feature loss (or `extra`) or is callable."""
    if callable(loss) or (isinstance(loss, str) and loss in FEATURE_LOSSES + tuple(extra)):
        return loss
    raise ValueError(
        f"`{arg_name}` must be one of {list(FEATURE_LOSSES + tuple(extra))} or a "
        "callable `fn(teacher_features, student_features, mask)` returning a "
        f"scalar. Received: {arg_name}={loss!r}."
    )


def feature_loss(teacher_features, student_features, loss="mse", mask=None):
    """Distance between teacher and student hidden states, averaged over positions.

    For "mse" and "cosine" the distance is taken per position over the last
    (feature) axis: the mean squared difference, or `1 - cos`. It is then
    averaged over the other positions weighted by `mask`. The widths must
    match; `Distiller` adds a learned projection when they don't.
    "relation" is `relation_loss` with its default heads (MiniLMv2; only
    the sequence length must match). A callable is called as
    `loss(teacher_features, student_features, mask)`, where `mask` is None
    or the batch's weights (a `(batch, seq)` padding mask for token models),
    and must return a scalar; it gets the raw activations (no projection),
    and owns the masking. The result is computed or cast to float32.

    Args:
        teacher_features: `(..., width)` activations of a teacher layer.
        student_features: the student's activations (same shape for "mse"
            and "cosine").
        loss: "mse", "cosine", "relation" or a callable.
        mask: optional weights shaped like the leading dimensions, e.g. a
            `(batch, seq)` padding mask.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: for an unknown `loss`, shapes that differ for "mse" and
            "cosine", or a callable that does not return a scalar.

    Example:

    ```python
    tfcompress.distillation.feature_loss(teacher_hidden, student_hidden, "cosine")
    ```
    """
    check_feature_loss(loss)
    mask = check_mask(mask)
    if callable(loss):
        return _custom(loss, teacher_features, student_features, mask)
    if loss == "relation":
        return relation_loss(teacher_features, student_features, mask)
    teacher = ops.cast(ops.convert_to_tensor(teacher_features), "float32")
    student = ops.cast(ops.convert_to_tensor(student_features), "float32")
    if tuple(teacher.shape[1:]) != tuple(student.shape[1:]):
        raise ValueError(
            "Teacher and student features must have the same shape; received "
            f"teacher {tuple(teacher.shape)} and student {tuple(student.shape)}. "
            "Pair layers of the same sequence length, and let the Distiller "
            "project the student when only the width differs."
        )
    if loss == "mse":
        per_position = ops.mean(ops.square(teacher - student), axis=-1)
    else:
        dot = ops.sum(teacher * student, axis=-1)
        norms = ops.norm(teacher, axis=-1) * ops.norm(student, axis=-1)
        per_position = 1.0 - dot / ops.maximum(norms, 1e-12)
    return masked_mean(per_position, mask)


def _custom(loss, teacher_features, student_features, mask):
    value = ops.cast(loss(teacher_features, student_features, mask), "float32")
    if len(value.shape) != 0:
        raise ValueError(
            f"The feature loss {getattr(loss, '__name__', loss)!r} returned shape "
            f"{tuple(value.shape)}; it must return a scalar (average over "
            "positions, e.g. with the mask)."
        )
    return value
