"""The knowledge-distillation loss: T²-scaled KL between softened distributions."""

from keras import ops

from tfcompress.core.checks import check_number
from tfcompress.distillation._masking import check_mask, masked_mean


def check_temperature(temperature):
    """Returns `temperature` as a float if it is a finite number > 0."""
    return check_number(
        temperature,
        "temperature",
        0,
        open_low=True,
        expected="a finite number > 0 (1 is the plain softmax, 2-5 is usual for distillation)",
    )


def check_same_classes(teacher_shape, student_shape):
    """Raises when the last (class / vocabulary) dimensions differ."""
    teacher_size, student_size = teacher_shape[-1], student_shape[-1]
    if teacher_size is not None and student_size is not None and teacher_size != student_size:
        raise ValueError(
            "Teacher and student logits must have the same last dimension "
            "(classes or vocabulary): teacher has "
            f"{teacher_size}, student has {student_size}. For language models "
            "build the student with the teacher's tokenizer and "
            f"`vocabulary_size={teacher_size}`; for classifiers give the student "
            f"a {teacher_size}-unit head."
        )


def kd_loss(
    teacher_logits, student_logits, temperature=1.0, mask=None, reverse=False, teacher_indices=None
):
    """Hinton's distillation loss, T² · KL(softmax(t/T) ‖ softmax(s/T)).

    Computed from `log_softmax` in float32, so it is stable for large logits
    and under mixed precision, and exactly 0 when the student equals the
    teacher. The KL is taken over the last axis, then averaged over the
    other positions (examples, or tokens of a language model) weighted by
    `mask`, so a padded batch gives the loss of its real tokens only. This is
    the value `tfcompress.distillation.Distiller` reports as
    `distillation_loss`.

    Args:
        teacher_logits: `(..., classes)` logits of the teacher (not
            probabilities).
        student_logits: logits of the same shape from the student.
        temperature: softening temperature T > 0. The T² factor keeps the
            gradient scale independent of T.
        mask: optional 0/1 (or non-negative) weights shaped like the leading
            dimensions of the logits, e.g. `(batch,)` or a `(batch, seq)`
            padding mask.
        reverse: if True, the reverse KL(softmax(s/T) ‖ softmax(t/T)), which
            is mode-seeking (MiniLLM, GKD) and tends to make better generators.
        teacher_indices: with cached top-k teacher outputs, the `(..., k)`
            class indices of the k values given as `teacher_logits`; the
            teacher's distribution is then its softmax over those k
            classes (the rest get probability 0), compared with the
            student's full-vocabulary log-probabilities at those classes.

    Returns:
        A float32 scalar.

    Raises:
        ValueError: for a temperature that is not a finite number > 0,
            logits whose last dimensions differ, or reverse KL with top-k
            teacher outputs.

    Example:

    ```python
    loss = tfcompress.distillation.kd_loss(
        [[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]], temperature=2.0
    )  # 1.2806
    ```
    """
    temperature = check_temperature(temperature)
    mask = check_mask(mask)
    teacher = ops.cast(ops.convert_to_tensor(teacher_logits), "float32")
    student = ops.cast(ops.convert_to_tensor(student_logits), "float32")
    log_teacher = ops.log_softmax(teacher / temperature, axis=-1)
    log_student = ops.log_softmax(student / temperature, axis=-1)
    if teacher_indices is None:
        check_same_classes(teacher.shape, student.shape)
    elif reverse:
        raise ValueError(
            "Reverse KL needs the teacher's full distribution, and top-k "
            "outputs only hold k classes. Cache full logits (top_k=None) or "
            "use forward KL."
        )
    else:
        indices = ops.cast(ops.convert_to_tensor(teacher_indices), "int32")
        log_student = ops.take_along_axis(log_student, indices, axis=-1)
    if reverse:
        log_teacher, log_student = log_student, log_teacher
    kl = ops.sum(ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
    return masked_mean(kl, mask) * (temperature**2)
