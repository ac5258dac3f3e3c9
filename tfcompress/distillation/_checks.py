"""Validation of the Distiller's models and compile arguments, before any work."""

from tfcompress.core.batches import padding_mask
from tfcompress.core.checks import check_fraction, ensure_keras3_model


def check_models(student, teacher):
    """Raises unless `student` and `teacher` are separate Keras 3 models."""
    ensure_keras3_model(student, "student")
    ensure_keras3_model(teacher, "teacher")
    if student is teacher:
        raise ValueError(
            "`student` and `teacher` are the same model object. The teacher "
            "is frozen, so nothing would train: build a separate student "
            "(e.g. tfcompress.distillation.make_student(teacher, ...))."
        )
    if not teacher.built:
        raise ValueError(
            f"`teacher` ({teacher.name!r}) is not built, so it has no trained "
            "weights. Pass the trained teacher model."
        )
    shared = {id(w) for w in teacher.weights} & {id(w) for w in student.weights}
    if shared:
        raise ValueError(
            f"`student` shares {len(shared)} weights with `teacher` (layers "
            "taken from the teacher). Freezing the teacher would freeze them "
            "in the student too: copy the layers (e.g. clone the model and "
            "set_weights) instead of reusing them."
        )


def check_compile_args(kwargs, alpha):
    """Raises for a `loss` argument or an alpha outside [0, 1]; returns alpha."""
    if "loss" in kwargs:
        raise ValueError(
            "Distiller.compile takes `student_loss_fn` (the hard loss) and "
            "`distillation_loss_fn`, not `loss`. Received: "
            f"loss={kwargs['loss']!r}."
        )
    return check_fraction(
        alpha,
        "alpha",
        include_one=True,
        expected="a number in [0, 1]",
        label="`alpha` (the weight of the hard loss)",
    )


def check_something_trains(distill_outputs, pairs, student_loss_fn):
    """Raises when compile would leave no loss term at all."""
    if not distill_outputs and not pairs and student_loss_fn is None:
        raise ValueError(
            "Nothing to train on: `distill_outputs=False` with no "
            "`feature_losses` and no `student_loss_fn`."
        )


def mask_from(x, sample_weight):
    """The weights of the batch's positions: `sample_weight`, else x's padding mask."""
    # keras-hub preprocessors yield (x, y, sample_weight) where sample_weight
    # is the padding mask shifted to the labels; it wins over x's own mask.
    if sample_weight is not None:
        return sample_weight
    return padding_mask(x)
