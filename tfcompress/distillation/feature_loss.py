"""Losses between hidden states: mean squared error and cosine distance."""

from keras import ops

from tfcompress.distillation._masking import check_mask
from tfcompress.distillation._masking import masked_mean

FEATURE_LOSSES = ("mse", "cosine")


def check_feature_loss(loss, arg_name="loss"):
    """Returns `loss` if it names a feature loss."""
    if loss not in FEATURE_LOSSES:
        raise ValueError(
            f"`{arg_name}` must be one of {list(FEATURE_LOSSES)}. "
            f"Received: {arg_name}={loss!r}."
        )
    return loss


def feature_loss(teacher_features, student_features, loss="mse", mask=None):
    """Distance between teacher and student hidden states, averaged over positions.

    The distance is taken per position over the last (feature) axis: the mean
    squared difference for "mse", `1 - cos` for "cosine". It is then averaged
    over the other positions weighted by `mask`. Computed in float32. The
    widths must match; `Distiller` adds a learned projection when they don't.

    Args:
        teacher_features: `(..., width)` activations of a teacher layer.
        student_features: activations of the same shape from the student.
        loss: "mse" or "cosine".
        mask: optional weights shaped like the leading dimensions, e.g. a
            `(batch, seq)` padding mask.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: for an unknown `loss` or shapes that differ.

    Example:

    ```python
    tfcompress.distillation.feature_loss(teacher_hidden, student_hidden, "cosine")
    ```
    """
    check_feature_loss(loss)
    mask = check_mask(mask)
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
