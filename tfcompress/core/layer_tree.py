"""Find every layer of any Keras model, nested keras-hub layers included."""

import dataclasses

import keras

from tfcompress.core import _keras_internals as internals


@dataclasses.dataclass
class LayerRef:
    """Where a layer sits in a model.

    Attributes:
        path: `/`-joined layer names from the root (the root itself excluded),
            the same prefix Keras gives the layer's variable paths.
        layer: the layer.
        parent: the layer or model that holds it.
        indices: positions in `child_layers` from the root down; unlike
            generated names (`softmax_3`), they find the layer again in a
            model rebuilt from the same config.
    """

    path: str
    layer: keras.layers.Layer
    parent: keras.layers.Layer
    indices: tuple = ()

    @property
    def depth(self):
        """1 for the root's direct children."""
        return len(self.indices)


def _container_layers(value):
    if isinstance(value, keras.layers.Layer):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, keras.layers.Layer)]
    return []


def child_layers(layer):
    """The direct sublayers of `layer`, in a stable order, without repeats."""
    found = []
    if isinstance(layer, keras.Sequential):
        found.extend(layer.layers)
    elif isinstance(layer, keras.Model) and hasattr(layer, "operations"):
        found.extend(op for op in layer.operations if isinstance(op, keras.layers.Layer))
    for name, value in vars(layer).items():
        if name in internals.BOOKKEEPING_ATTRIBUTES or name.startswith("__"):
            continue
        found.extend(_container_layers(value))
    found.extend(internals.tracked_layers(layer) or [])
    seen, children = set(), []
    for child in found:
        if id(child) in seen or child is layer:
            continue
        if isinstance(child, keras.layers.InputLayer):
            continue
        seen.add(id(child))
        children.append(child)
    return children


def walk_layers(root, descend=None):
    """Every layer below `root`, parents before children.

    Args:
        root: a Keras layer or model.
        descend: optional predicate `descend(layer) -> bool`; when it returns
            False the layer is listed but its children are not visited (used to
            stop at wrappers).

    Returns:
        A list of `LayerRef`, each layer once.

    Example:

    ```python
    for ref in tfcompress.core.walk_layers(bert_backbone):
        print(ref.path)  # e.g. transformer_layer_0/self_attention_layer/query
    ```
    """
    refs, visited = [], {id(root)}

    def visit(parent, prefix, indices):
        used = {}
        for index, child in enumerate(child_layers(parent)):
            if id(child) in visited:
                continue
            visited.add(id(child))
            name = child.name
            if name in used:
                used[name] += 1
                name = f"{name}#{used[name]}"
            else:
                used[name] = 0
            path = f"{prefix}/{name}" if prefix else name
            child_indices = indices + (index,)
            refs.append(LayerRef(path, child, parent, child_indices))
            if descend is None or descend(child):
                visit(child, path, child_indices)

    visit(root, "", ())
    return refs


def layers_of(model):
    """`model` and every layer inside it (`walk_layers` order)."""
    return [model] + [ref.layer for ref in walk_layers(model)]


def find_layer(root, path):
    """The `LayerRef` at `path` (as produced by `walk_layers`).

    Raises:
        KeyError: when no layer has that path; the message lists close paths.
    """
    refs = walk_layers(root)
    for ref in refs:
        if ref.path == path:
            return ref
    tail = path.rsplit("/", 1)[-1]
    close = [r.path for r in refs if r.path.endswith(tail)][:5]
    raise KeyError(
        f"No layer at path {path!r} in {root.name!r}. Layers with the same name: {close or 'none'}."
    )
