"""Which layers replaced a model's own, and how a rebuilt model gets them back.

A layer put in place of another (a narrower Dense, a MultiHeadAttention with
fewer heads, two Dense layers for one) is remembered here, keyed by the new
layer object, with the class of the layer it replaced. When the model is
saved, `replacement_recipe` turns every remembered layer still in the model
into "the layer at this path is now this registered layer with this config,
built with these shapes"; `apply_replacements` does that to a freshly
rebuilt model, before Keras loads any weight into it.
"""

import json
import weakref

import keras

from tfcompress.core.layer_tree import child_layers
from tfcompress.core.swap import swap_layer
from tfcompress.core.wrapper import CompressionWrapper

# new layer -> class name of the layer the rebuilt model has at its place.
_REPLACED = weakref.WeakKeyDictionary()


def record_replacement(old, new):
    """Remembers that `new` took the place of `old`; returns whether it did.

    A wrapper around a layer is not a replacement (the wrapper recipe records
    it), nor is the inner layer that `strip` puts back in a wrapper's place.
    """
    if isinstance(new, CompressionWrapper):
        return False
    while isinstance(old, CompressionWrapper):
        if new is old.layer:
            return False
        old = old.layer
    _REPLACED[new] = _REPLACED.get(old, type(old).__name__)
    return True


def _unwrapped(layer):
    """The layer a wrapper stands for: wrappers are re-applied after replacements."""
    while isinstance(layer, CompressionWrapper):
        layer = layer.layer
    return layer


def _normalized(config):
    """`config` as it reads after a JSON round trip (tuples become lists)."""
    return json.loads(json.dumps(config))


def replacement_recipe(model):
    """The recorded replacements still in `model`, parents first, as JSON.

    Returns:
        A list of `{"path", "indices", "replaced_class", "layer",
        "build_config"}` dicts: the name and child-index paths (as they are
        in the model without its wrappers), the class of the layer that was
        replaced, the new layer serialized with `keras.saving`, and its
        build config.
    """
    entries, visited = [], {id(model)}

    def visit(parent, prefix, indices):
        used = {}
        for index, child in enumerate(child_layers(parent)):
            layer = _unwrapped(child)
            if id(layer) in visited:
                continue
            visited.add(id(layer))
            count = used.get(layer.name, -1) + 1
            used[layer.name] = count
            name = f"{layer.name}#{count}" if count else layer.name
            path = f"{prefix}/{name}" if prefix else name
            if layer in _REPLACED:
                entries.append(
                    {
                        "path": path,
                        "indices": list(indices + (index,)),
                        "replaced_class": _REPLACED[layer],
                        "layer": _normalized(keras.saving.serialize_keras_object(layer)),
                        "build_config": _normalized(layer.get_build_config()),
                    }
                )
            visit(layer, path, indices + (index,))

    visit(_unwrapped(model), "", ())
    return entries


def locate(model, indices):
    """`(parent, layer)` at a child-index path, or None when there is none."""
    parent, layer = None, model
    for index in indices:
        children = child_layers(layer)
        if index >= len(children):
            return None
        parent, layer = layer, children[index]
    return parent, layer


def rebuild_layer(entry):
    """The new layer of a recipe entry, deserialized and built (no weights)."""
    layer = keras.saving.deserialize_keras_object(entry["layer"])
    if entry.get("build_config") and not layer.built:
        layer.build_from_config(entry["build_config"])
    return layer


def apply_replacements(model, entries):
    """Puts the recorded layers in place in a freshly rebuilt `model`.

    A layer the model's config already restored (inside a Sequential or
    functional parent) is left as it is.

    Args:
        model: a model rebuilt from its config.
        entries: the list from `replacement_recipe`, as a saved config holds it.

    Returns:
        `model`, its layers replaced and remembered as replacements.

    Raises:
        KeyError: when a recorded path holds no layer of the replaced class.
    """
    for entry in entries:
        found = locate(model, entry["indices"])
        layer = found[1] if found else None
        # Same class, config and build shapes: the model's config restored it.
        # Classes are compared first: some keras-hub layers cannot serialize
        # (LlamaAttention.get_config reads an attribute it never sets).
        if (
            layer is not None
            and type(layer).__name__ == entry["layer"].get("class_name")
            and _normalized(keras.saving.serialize_keras_object(layer)) == entry["layer"]
        ):
            _REPLACED[layer] = entry["replaced_class"]
            continue
        if layer is None or type(layer).__name__ != entry["replaced_class"]:
            raise KeyError(
                f"The recipe replaces the {entry['replaced_class']} at "
                f"{entry['path']!r}, which model {model.name!r} does not have "
                f"(found {type(layer).__name__ if layer else 'nothing'}): the "
                "model's config no longer builds the same layers."
            )
        new = rebuild_layer(entry)
        swap_layer(found[0], layer, new)
        _REPLACED[new] = entry["replaced_class"]
    return model
