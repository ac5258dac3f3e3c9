"""Reading `compile(feature_losses=...)`: which layers, which loss, what weight."""

import dataclasses

import keras

from tfcompress.core._keras_internals import attention_projections
from tfcompress.core.checks import check_number
from tfcompress.core.layer_tree import find_layer, walk_layers
from tfcompress.core.replacements import locate
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


def _attribute_layer(model, path):
    """The layer at Python attribute path `path` ("blocks.0.attention", or
    with `/`) of `model`, or None.

    Subclassed models of one class get generated layer names that differ
    between the teacher and the student (`block` and `block_2`); the
    attributes that hold them do not.
    """
    value = model
    for part in path.replace("/", ".").split("."):
        if isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        elif part and not part.startswith("_") and isinstance(value, keras.layers.Layer):
            value = vars(value).get(part)
        else:
            return None
    return value if isinstance(value, keras.layers.Layer) and value is not model else None


def _find_path(model, path):
    """The full path of `path`, of the one layer whose path ends with it, or
    of the layer at that Python attribute path.

    A layer inside a wrapper resolves to the wrapper. Tails matter because
    generated names differ between two models of one class: the student's
    backbone is often `gpt2_backbone_1`, so "transformer_layer_1" is the
    portable way to name a block; in a subclassed model, so is the
    attribute ("block" for `self.block`).
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
    attribute = _attribute_layer(model, path)
    for ref in refs:
        if ref.layer is attribute:
            return _outermost_wrapper(ref, refs).path
    tail = path.rsplit("/", 1)[-1]
    close = [p for p in paths if p.rsplit("/", 1)[-1] == tail][:5]
    outer = [p for p in paths if p.count("/") < 2]
    listed = f"{outer[:12]}" + (f" and {len(outer) - 12} more" if len(outer) > 12 else "")
    raise ValueError(
        f"No layer path is or ends with {path!r}, and no attribute of the model "
        f"holds a layer by that name; same-named layers: {close or 'none'}. Its "
        f"layers (two levels): {listed}."
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
                "e.g. 'transformer_layer_1', or attributes ('block' for "
                "`self.block`, 'blocks.0'), or give the layer object."
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
            "feature_losses pairs the same layers twice with the same loss: "
            f"{[key for key, _ in keys]}."
        )
    return pairs


def pair_locations(pairs, teacher, student):
    """Where each pair's layers sit, by child index and class, for a saved config.

    Generated names are not stable: a subclassed model rebuilt on load gets
    new ones (`block_5` for what was `block_1`), and may give an old name to
    another layer. Child indices find the same layer in a model rebuilt from
    the same config (`LayerRef.indices`).
    """
    locations = []
    for pair in pairs:
        refs = [find_layer(teacher, pair.teacher_path), find_layer(student, pair.student_path)]
        locations.append(
            [list(ref.indices) for ref in refs] + [type(r.layer).__name__ for r in refs]
        )
    return locations


def relocate(entries, locations, teacher, student):
    """`feature_losses` entries of a saved config, with the layers found again.

    Each entry whose recorded child indices still reach layers of the
    recorded classes gets those layer objects in place of its paths; others
    keep their paths (a config saved before locations were recorded, or a
    model whose code changed).

    Returns:
        `(entries, renames)`: the entries, and `{old pair key: new pair key}`
        for the projections recorded under the saved paths.
    """
    relocated, renames = [], {}
    for entry, location in zip(entries, locations or [None] * len(entries)):
        entry = list(entry)
        if location is not None:
            teacher_indices, student_indices, teacher_class, student_class = location
            found = [locate(teacher, teacher_indices), locate(student, student_indices)]
            # Keras's deserializer turns a class name it knows into the class.
            recorded = [getattr(c, "__name__", c) for c in (teacher_class, student_class)]
            if all(found) and [type(f[1]).__name__ for f in found] == recorded:
                old = FeaturePair(*entry).key
                entry[:2] = [found[0][1], found[1][1]]
                new = resolve_pairs([entry], teacher, student)[0]
                renames[old] = new.key
        relocated.append(entry)
    return relocated, renames
