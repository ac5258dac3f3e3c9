"""Knowledge distillation for Keras 3 and keras-hub models.

`Distiller` trains a student to match a frozen teacher (logits, tokens of a
language model, hidden states); `kd_loss` and `feature_loss` are the values
it uses; `capture_outputs` records layer activations of any model;
`relation_loss` is MiniLMv2's attention-relation loss;
`make_student` cuts a smaller student out of a keras-hub teacher.
"""

from tfcompress.distillation.capture_outputs import capture_outputs
from tfcompress.distillation.distiller import Distiller
from tfcompress.distillation.feature_loss import feature_loss
from tfcompress.distillation.kd_loss import kd_loss
from tfcompress.distillation.make_student import make_student
from tfcompress.distillation.relation_loss import relation_loss

__all__ = [
    "Distiller",
    "capture_outputs",
    "feature_loss",
    "kd_loss",
    "make_student",
    "relation_loss",
]
