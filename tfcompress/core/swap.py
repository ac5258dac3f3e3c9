"""Swap one layer for another wherever its parent refers to it (no recording)."""

import contextlib
import inspect

import keras
from keras.src.ops.symbolic_arguments import SymbolicArguments

from tfcompress.core.layer_tree import _SKIP_ATTRIBUTES


def _set_items(container, items):
    """Sets a list's contents in place.

    TensorFlow's `ListWrapper` (what Keras layers' list attributes become on
    the TF backend) refuses to be saved once an element was replaced through
    its own methods; editing its storage and acknowledging the new snapshot
    keeps it exportable.
    """
    storage = getattr(container, "_storage", None)
    if isinstance(storage, list) and hasattr(container, "_update_snapshot"):
        storage[:] = items
        container._update_snapshot()
    else:
        container[:] = items


def _swap_in_container(container, old, new):
    """Replaces `old` in a list/dict in place; returns True when found."""
    found = False
    if isinstance(container, dict):
        for key, value in list(container.items()):
            if value is old:
                container[key] = new
                found = True
    elif isinstance(container, list):
        found = any(value is old for value in container)
        if found:
            _set_items(container, [new if v is old else v for v in container])
    return found


def _swap_attributes(parent, old, new):
    found = False
    for name, value in list(vars(parent).items()):
        if name in _SKIP_ATTRIBUTES or name.startswith("__"):
            continue
        if value is old:
            setattr(parent, name, new)
            found = True
        elif isinstance(value, tuple) and any(v is old for v in value):
            setattr(parent, name, tuple(new if v is old else v for v in value))
            found = True
        elif isinstance(value, (list, dict)):
            found = _swap_in_container(value, old, new) or found
    return found


def _accepted_kwargs(layer):
    parameters = inspect.signature(layer.call).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def _fit_arguments(node, new):
    """Drops recorded `None` keyword arguments that `new.call` does not take.

    Keras records e.g. `mask=None` for layers whose `call` has a `mask`
    argument; a wrapper has one, the layer it wraps may not.
    """
    accepted = _accepted_kwargs(new)
    kwargs = node.arguments.kwargs
    if accepted is None or all(k in accepted for k in kwargs):
        return
    kept = {k: v for k, v in kwargs.items() if k in accepted or v is not None}
    node.arguments = SymbolicArguments(*node.arguments.args, **kept)


def _swap_in_graph(model, old, new):
    """Points the nodes of a functional graph at `new` instead of `old`."""
    index_map = {}
    for index, node in enumerate(list(old._inbound_nodes)):
        index_map[index] = len(new._inbound_nodes)
        node.operation = new
        _fit_arguments(node, new)
        new._inbound_nodes.append(node)
        for tensor in node.outputs:
            history = getattr(tensor, "_keras_history", None)
            if history is not None and history.operation is old:
                tensor._keras_history = history._replace(
                    operation=new, node_index=index_map[index]
                )
    new._outbound_nodes.extend(old._outbound_nodes)
    # `old` now lives inside `new` (or is gone); its graph role moved over.
    del old._inbound_nodes[:]
    del old._outbound_nodes[:]
    old_prefix = f"{id(old)}_ib-"
    remapped = set()
    for key in model._nodes:
        if key.startswith(old_prefix):
            key = f"{id(new)}_ib-{index_map[int(key[len(old_prefix):])]}"
        remapped.add(key)
    model._nodes = remapped
    _swap_in_container(model._operations, old, new)
    for operations in model._operations_by_depth.values():
        _swap_in_container(operations, old, new)
    _dedupe_tracked(model, old, new)


def _dedupe_tracked(layer, old, new):
    """Keeps `new` once and `old` never in the layer's tracked sublayers."""
    layers = getattr(layer, "_layers", None)
    if not isinstance(layers, list):
        return False
    found = any(item is old for item in layers)
    kept, seen = [], set()
    for item in layers:
        item = new if item is old else item
        if id(item) not in seen:
            seen.add(id(item))
            kept.append(item)
    _set_items(layers, kept)
    return found


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built layer take new sublayers (Keras locks its tracker at build)."""
    tracker = getattr(layer, "_tracker", None)
    was_locked = bool(tracker and tracker.locked)
    if tracker is not None:
        tracker.unlock()
    try:
        yield layer
    finally:
        if was_locked:
            tracker.lock()


def swap_layer(parent, old, new):
    """Replaces the direct sublayer `old` of `parent` by `new`, in place.

    Handles attributes (`self._query_dense`), tracked lists and dicts of layers,
    the layer stack of a `Sequential`, and the graph of a functional model
    (keras-hub backbones included), so that calls, weights, `get_config` and
    saving all see `new`. `new` must already be built. Nothing is recorded:
    `tfcompress.core.replace_layer` is the public entry point, which also
    makes the model save the replacement.

    Args:
        parent: the layer or model holding `old` (`LayerRef.parent`).
        old: the layer to replace.
        new: its replacement.

    Raises:
        ValueError: when `old` is not a direct sublayer of `parent`.
    """
    with unlocked(parent):
        found = False
        if isinstance(parent, keras.Sequential):
            found = _swap_in_container(parent._layers, old, new)
            if found and parent._functional is not None:
                _swap_in_graph(parent._functional, old, new)
        elif isinstance(parent, keras.Model) and hasattr(parent, "_operations"):
            if any(op is old for op in parent._operations):
                _swap_in_graph(parent, old, new)
                found = True
        found = _swap_attributes(parent, old, new) or found
        if not isinstance(parent, keras.Sequential):
            found = _dedupe_tracked(parent, old, new) or found
    if not found:
        raise ValueError(
            f"Layer {old.name!r} is not a direct sublayer of "
            f"{parent.name!r}; pass the parent from `walk_layers`."
        )
