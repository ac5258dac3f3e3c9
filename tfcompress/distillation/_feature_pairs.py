"""Reading `compile(feature_losses=...)`: which layers, which loss, what weight."""

import dataclasses

import keras

from tfcompress.core._keras_internals import attention_projections
from tfcompress.core.checks import check_number
from tfcompress.core.layer_tree import find_layer, walk_layers
from tfcompress.distillation.feature_loss import DISTANCES, check_feature_loss

# Expands into the query, key and value relation pairs of two attention layers.
ATTENTION_RELATION = "attention_relation"


@dataclasses.dataclass(frozen=True)
class FeaturePair:
    """A teacher layer, a student layer and how to compare their outputs."""

    teacher_path: str
    student_path: str
    loss: object = "mse"
    weight: float = 1.0

    @property
    def key(self):
        # Pairs of the same layers share a projection, unless their loss
        # takes the widths as they are.
        key = f"{self.teacher_path} -> {self.student_path}"
        if self.projects:
            return key
        name = (
            self.loss
            if isinstance(self.loss, str)
            else getattr(self.loss, "__name__", repr(self.loss))
        )
        return f"{key} ({name})"

    @property
    def projects(self):
        """Whether a width mismatch gets a learned projection."""
        return isinstance(self.loss, str) and self.loss in DISTANCES

    def to_config(self):
        return [self.teacher_path, self.student_path, self.loss, self.weight]


def _outermost_wrapper(ref, refs):
    # A pruned or quantized student keeps the original layer inside a
    # wrapper, which may compute the output without calling it; the
    # wrapper's output is the compressed layer's activation.
    by_layer = {id(r.layer): r for r in refs}
    while isinstance(ref.parent, keras.layers.Wrapper) and id(ref.parent) in by_layer:
        ref = by_layer[id(ref.parent)]
    return ref


def _find_path(model, path):
    """The full path of `path`, or of the one layer whose path ends with it.

    A layer inside a wrapper resolves to the wrapper. Tails matter because
    generated names differ between two models of one class: the student's
    backbone is often `gpt2_backbone_1`, so "transformer_layer_1" is the
    portable way to name a block.
    """
    refs = walk_layers(model)
    paths = [ref.path for ref in refs]
    found = [ref for ref in refs if ref.path == path] or [
        ref for ref in refs if ref.path.endswith("/" + path)
    ]
    if len(found) == 1:
        return _outermost_wrapper(found[0], refs).path
    tails = [ref.path for ref in found]
    if tails:
        raise ValueError(
            f"{path!r} ends {len(tails)} layer paths: {tails[:5]}; give a longer path."
        )
    tail = path.rsplit("/", 1)[-1]
    close = [p for p in paths if p.rsplit("/", 1)[-1] == tail][:5]
    raise ValueError(
        f"No layer path is or ends with {path!r}; same-named layers: {close or 'none'}."
    )


def _path_of(model, layer, role, index):
    if isinstance(layer, str):
        try:
            return _find_path(model, layer)
        except ValueError as error:
            raise ValueError(
                f"feature_losses[{index}]: the {role} {model.name!r} has no layer "
                f"at path {layer!r}. {error.args[0]} Paths are the ones "
                "`tfcompress.core.walk_layers(model)` lists, or their ends, "
                "e.g. 'transformer_layer_1'."
            ) from None
    if isinstance(layer, keras.layers.Layer):
        refs = walk_layers(model)
        for ref in refs:
            if ref.layer is layer:
                return _outermost_wrapper(ref, refs).path
        raise ValueError(
            f"feature_losses[{index}]: layer {layer.name!r} is not inside the "
            f"{role} {model.name!r}. Give a layer of the {role}, or its path."
        )
    raise TypeError(
        f"feature_losses[{index}]: the {role} layer must be a path string or a "
        f"Keras layer. Received: {layer!r}."
    )


def _attention_of(model, path, role, index):
    """The one `MultiHeadAttention` at or inside the layer at `path`."""
    layer = find_layer(model, path).layer
    if isinstance(layer, keras.layers.MultiHeadAttention):
        return layer
    found = [
        ref.layer
        for ref in walk_layers(layer)
        if isinstance(ref.layer, keras.layers.MultiHeadAttention)
    ]
    if len(found) != 1:
        raise ValueError(
            f"feature_losses[{index}]: loss 'attention_relation' needs a "
            "`MultiHeadAttention` layer or a block holding exactly one; the "
            f"{role}'s {path!r} holds {len(found)}. Name the attention layer "
            "(e.g. 'transformer_layer_1/self_attention'), or pair its query, "
            "key and value layers with loss 'relation'."
        )
    return found[0]


def _attention_pairs(teacher, student, teacher_path, student_path, weight, index):
    """MiniLMv2's query-query, key-key and value-value relation pairs."""
    layers = [
        _attention_of(model, path, role, index)
        for model, path, role in (
            (teacher, teacher_path, "teacher"),
            (student, student_path, "student"),
        )
    ]
    teacher_projections, student_projections = (attention_projections(x) for x in layers)
    return [
        FeaturePair(
            _path_of(teacher, getattr(teacher_projections, name), "teacher", index),
            _path_of(student, getattr(student_projections, name), "student", index),
            "relation",
            weight,
        )
        for name in ("query", "key", "value")
    ]


def resolve_pairs(feature_losses, teacher, student):
    """`FeaturePair`s for a `feature_losses` list, validated against the models.

    Each entry is `(teacher_layer, student_layer)`, optionally followed by a
    loss ("mse", "cosine", "relation", "attention_relation" or a callable)
    and a weight. "attention_relation" becomes three "relation" pairs.
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
        loss = check_feature_loss(
            rest[0] if rest else "mse", f"feature_losses[{index}] loss", (ATTENTION_RELATION,)
        )
        weight = rest[1] if len(rest) > 1 else 1.0
        weight = check_number(
            weight, "weight", 0, expected="a number >= 0", label=f"feature_losses[{index}] weight"
        )
        teacher_path = _path_of(teacher, teacher_layer, "teacher", index)
        student_path = _path_of(student, student_layer, "student", index)
        if loss == ATTENTION_RELATION:
            pairs += _attention_pairs(
                teacher, student, teacher_path, student_path, float(weight), index
            )
        else:
            pairs.append(FeaturePair(teacher_path, student_path, loss, float(weight)))
    keys = [(pair.key, pair.loss) for pair in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(
            f"feature_losses pairs the same layers twice with the same loss: {[key for key, _ in keys]}."
        )
    return pairs
