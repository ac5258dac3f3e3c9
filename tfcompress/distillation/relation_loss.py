"""MiniLMv2's self-attention relation loss between two sets of activations."""

import math

import keras
from keras import ops

from tfcompress.distillation._masking import check_mask, masked_mean

# Added to the scores of padded keys: large enough to zero their softmax
# weight in float32, finite so a fully padded row stays a number.
_MASKED_SCORE = -1e9


def _heads_split(features, num_heads, role):
    """`(batch, heads, seq, head_width)` from `(batch, seq, ...)` activations."""
    width = math.prod(features.shape[2:])
    if width % num_heads:
        raise ValueError(
            f"The {role}'s activations have width {width} (shape "
            f"{tuple(features.shape)}), which does not split into "
            f"num_heads={num_heads} relation heads. Pass a `num_heads` that "
            "divides both the teacher's and the student's widths."
        )
    batch, seq = ops.shape(features)[0], ops.shape(features)[1]
    split = ops.reshape(features, (batch, seq, num_heads, width // num_heads))
    return ops.transpose(split, (0, 2, 1, 3))


def _log_relations(features, num_heads, key_mask, role):
    heads = _heads_split(ops.cast(features, "float32"), num_heads, role)
    scale = 1.0 / math.sqrt(heads.shape[-1])
    scores = ops.matmul(heads, ops.transpose(heads, (0, 1, 3, 2))) * scale
    if key_mask is not None:
        scores = scores + (1.0 - key_mask[:, None, None, :]) * _MASKED_SCORE
    return ops.log_softmax(scores, axis=-1)


# Registered so that passing it as a `feature_losses` callable still saves.
@keras.saving.register_keras_serializable(package="tfcompress")
def relation_loss(teacher_features, student_features, mask=None, num_heads=None):
    """KL between the self-relations of teacher and student activations (MiniLMv2).

    For each relation head h, the relation of activations X (one sequence)
    is `softmax(X_h X_hᵀ / sqrt(d_h))` over positions: how strongly each
    position's query, key or value vector matches every other position's.
    The loss is KL(teacher relation ‖ student relation) per query position,
    averaged over heads and over the real positions `mask` weights. Padded
    positions are also removed as keys before the softmax. Only the
    sequence length must match: the widths may differ (no projection), as
    both sides are split into the same `num_heads` relation heads. Applied
    to the query, key and value projections of an attention layer this is
    MiniLMv2's query-query, key-key and value-value relation distillation
    (`loss="attention_relation"` in `Distiller.compile(feature_losses=...)`
    pairs all three). Computed in float32.

    Args:
        teacher_features: `(batch, seq, width)` or `(batch, seq, heads,
            head_dim)` activations, e.g. an `EinsumDense` query output of a
            keras-hub attention layer.
        student_features: the student's activations, same batch and length.
        mask: optional `(batch, seq)` 0/1 padding mask; other shapes weight
            the positions only.
        num_heads: relation heads; default the teacher's heads axis for
            4-D activations, else 1.

    Returns:
        A float32 scalar, 0 when the student's relations equal the teacher's.

    Raises:
        ValueError: when the batch or sequence dimensions differ, or a
            width does not split into `num_heads`.

    Example:

    ```python
    loss = tfcompress.distillation.relation_loss(teacher_query, student_query, padding_mask)
    ```
    """
    mask = check_mask(mask)
    teacher = ops.convert_to_tensor(teacher_features)
    student = ops.convert_to_tensor(student_features)
    if len(teacher.shape) < 3 or len(student.shape) < 3 or teacher.shape[:2] != student.shape[:2]:
        raise ValueError(
            "Relation losses compare sequences: both activations must be "
            "(batch, seq, ...) with the same batch and length. Received "
            f"teacher {tuple(teacher.shape)} and student {tuple(student.shape)}."
        )
    if num_heads is None:
        num_heads = teacher.shape[2] if len(teacher.shape) == 4 else 1
    key_mask = None
    if mask is not None and len(mask.shape) == 2:
        key_mask = ops.cast(mask, "float32")
    log_teacher = _log_relations(teacher, num_heads, key_mask, "teacher")
    log_student = _log_relations(student, num_heads, key_mask, "student")
    kl = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
    per_position = ops.mean(kl, axis=1)
    return masked_mean(per_position, mask)
