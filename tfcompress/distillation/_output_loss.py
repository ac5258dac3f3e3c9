"""The output term of the distillation loss: which function, on which values."""

import keras
from keras import ops, tree

from tfcompress.distillation._masking import masked_mean
from tfcompress.distillation.feature_loss import DISTANCES, feature_loss
from tfcompress.distillation.kd_loss import kd_loss

_KL_NAMES = ("kl_divergence", "kld", "kl", "kullback_leibler_divergence")


def single_output(outputs, role):
    flat = tree.flatten(outputs)
    if len(flat) != 1:
        raise ValueError(
            f"The {role} returns {len(flat)} outputs ({type(outputs).__name__}); "
            "distilling outputs needs one logits tensor. Wrap the model so it "
            "returns its logits, or pass `distill_outputs=False` and distil "
            "hidden states with `feature_losses`."
        )
    return flat[0]


def resolve_distillation_loss(fn):
    if fn is None or (isinstance(fn, str) and fn in _KL_NAMES):
        return "kl"
    if isinstance(fn, keras.losses.KLDivergence) or fn is keras.losses.kl_divergence:
        return "kl"
    if isinstance(fn, str) and fn in DISTANCES:
        return fn
    if callable(fn):
        return fn
    raise ValueError(
        "`distillation_loss_fn` must be None or 'kl_divergence' (T²-scaled KL, "
        f"the default), 'mse' or 'cosine' (on raw outputs), or a callable. "
        f"Received: distillation_loss_fn={fn!r}."
    )


def per_position(fn, y_true, y_pred):
    # `Loss.call` gives unreduced values, so padded positions can be masked.
    if isinstance(fn, keras.losses.Loss):
        return fn.call(y_true, y_pred)
    return fn(y_true, y_pred)


def output_loss(mode, teacher, student, mask, temperature, reverse=False, teacher_indices=None):
    """The output term for `mode` (from `resolve_distillation_loss`)."""
    if mode == "kl":
        return kd_loss(teacher, student, temperature, mask, reverse, teacher_indices)
    if isinstance(mode, str) and mode in DISTANCES:
        return feature_loss(teacher, student, mode, mask)
    # The keras-io example's contract: the callable compares softened
    # probabilities, and T² keeps the gradient scale.
    soft_teacher = ops.softmax(ops.cast(teacher, "float32") / temperature, axis=-1)
    soft_student = ops.softmax(ops.cast(student, "float32") / temperature, axis=-1)
    return masked_mean(per_position(mode, soft_teacher, soft_student), mask) * temperature**2
