"""Reading `compile(feature_losses=...)`: which layers, which loss, what weight."""

import dataclasses
import numbers

import keras

from tfcompress.core.layer_tree import find_layer
from tfcompress.core.layer_tree import walk_layers
from tfcompress.distillation.feature_loss import check_feature_loss


@dataclasses.dataclass(frozen=True)
class FeaturePair:
    """A teacher layer, a student layer and how to compare their outputs."""

    teacher_path: str
    student_path: str
    loss: str = "mse"
    weight: float = 1.0

    @property
    def key(self):
        return f"{self.teacher_path} -> {self.student_path}"

    def to_config(self):
        return [self.teacher_path, self.student_path, self.loss, self.weight]


def _path_of(model, layer, role, index):
    if isinstance(layer, str):
        try:
            return find_layer(model, layer).path
        except KeyError as error:
            raise ValueError(
                f"feature_losses[{index}]: the {role} has no layer at path "
                f"{layer!r}. {error.args[0]} Paths are the ones "
                "`tfcompress.core.walk_layers(model)` lists, e.g. "
                "'gpt2_backbone/transformer_layer_1'."
            ) from None
    if isinstance(layer, keras.layers.Layer):
        for ref in walk_layers(model):
            if ref.layer is layer:
                return ref.path
        raise ValueError(
            f"feature_losses[{index}]: layer {layer.name!r} is not inside the "
            f"{role} {model.name!r}. Give a layer of the {role}, or its path."
        )
    raise TypeError(
        f"feature_losses[{index}]: the {role} layer must be a path string or a "
        f"Keras layer. Received: {layer!r}."
    )


def resolve_pairs(feature_losses, teacher, student):
    """`FeaturePair`s for a `feature_losses` list, validated against the models.

    Each entry is `(teacher_layer, student_layer)`, optionally followed by a
    loss ("mse" or "cosine") and a weight.
    """
    if feature_losses is None:
        return []
    if not isinstance(feature_losses, (list, tuple)):
        raise TypeError(
            "`feature_losses` must be a list of (teacher_layer, student_layer"
            "[, loss[, weight]]) tuples. Received: "
            f"feature_losses={feature_losses!r}."
        )
    pairs = []
    for index, entry in enumerate(feature_losses):
        if not isinstance(entry, (list, tuple)) or not 2 <= len(entry) <= 4:
            raise ValueError(
                f"feature_losses[{index}] must be (teacher_layer, student_layer"
                f"[, loss[, weight]]). Received: {entry!r}."
            )
        teacher_layer, student_layer, *rest = entry
        loss = check_feature_loss(rest[0] if rest else "mse", f"feature_losses[{index}] loss")
        weight = rest[1] if len(rest) > 1 else 1.0
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or weight < 0:
            raise ValueError(
                f"feature_losses[{index}] weight must be a number >= 0. "
                f"Received: {weight!r}."
            )
        pairs.append(
            FeaturePair(
                _path_of(teacher, teacher_layer, "teacher", index),
                _path_of(student, student_layer, "student", index),
                loss,
                float(weight),
            )
        )
    keys = [pair.key for pair in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"feature_losses pairs the same layers twice: {keys}.")
    return pairs
