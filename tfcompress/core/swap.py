"""Swap one layer for another wherever its parent refers to it (no recording)."""

import inspect

import keras

from tfcompress.core import _keras_internals as internals


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
            internals.set_list_items(container, [new if v is old else v for v in container])
    return found


def _swap_attributes(parent, old, new):
    found = False
    for name, value in list(vars(parent).items()):
        if name in internals.BOOKKEEPING_ATTRIBUTES or name.startswith("__"):
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
    node.arguments = internals.symbolic_arguments(*node.arguments.args, **kept)


def _swap_in_graph(model, old, new):
    """Points the nodes of a functional graph at `new` instead of `old`."""
    index_map = {}
    old_nodes, new_nodes = internals.inbound_nodes(old), internals.inbound_nodes(new)
    for index, node in enumerate(list(old_nodes)):
        index_map[index] = len(new_nodes)
        node.operation = new
        _fit_arguments(node, new)
        new_nodes.append(node)
        for tensor in node.outputs:
            history = internals.keras_history(tensor)
            if history is not None and history.operation is old:
                internals.set_keras_history(tensor, new, index_map[index])
    internals.outbound_nodes(new).extend(internals.outbound_nodes(old))
    # `old` now lives inside `new` (or is gone); its graph role moved over.
    del old_nodes[:]
    del internals.outbound_nodes(old)[:]
    remapped = set()
    for key in internals.node_keys(model):
        operation_id, index = internals.parse_node_key(key)
        if operation_id == id(old):
            key = internals.node_key(new, index_map[index])
        remapped.add(key)
    internals.set_node_keys(model, remapped)
    _swap_in_container(internals.graph_operations(model), old, new)
    for operations in internals.operations_by_depth(model).values():
        _swap_in_container(operations, old, new)
    _dedupe_tracked(model, old, new)


def _dedupe_tracked(layer, old, new):
    """Keeps `new` once and `old` never in the layer's tracked sublayers."""
    layers = internals.tracked_layers(layer)
    if layers is None:
        return False
    found = any(item is old for item in layers)
    kept, seen = [], set()
    for item in layers:
        item = new if item is old else item
        if id(item) not in seen:
            seen.add(id(item))
            kept.append(item)
    internals.set_list_items(layers, kept)
    return found


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
    with internals.unlocked(parent):
        found = False
        if isinstance(parent, keras.Sequential):
            found = _swap_in_container(internals.tracked_layers(parent), old, new)
            graph = internals.sequential_graph(parent)
            if found and graph is not None:
                _swap_in_graph(graph, old, new)
        elif internals.has_graph(parent):
            if any(op is old for op in internals.graph_operations(parent)):
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
