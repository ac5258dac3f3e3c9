"""Record, in a `.keras` file, the wrappers that a model's config cannot hold.

keras-hub blocks rebuild their sublayers from hyperparameters, so a wrapper
put inside a `TransformerEncoder` is not in any config. `attach_recipe` adds a
weightless layer to the model whose `save_assets` writes the list of wrappers
(path of the wrapped layer and the wrapper's config) into every `.keras` file
the model is saved to, by `model.save`, `ModelCheckpoint` or `save_model`.
`tfcompress.saving.load_model` reads it back.
"""

import json
import os
import weakref

import keras

from tfcompress.core.layer_tree import child_layers
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.replace import replace_layer
from tfcompress.core.replace import unlocked
from tfcompress.core.wrapper import CompressionWrapper, build_shape_of

RECIPE_ATTRIBUTE = "_tfcompress_recipe"
RECIPE_FILE = "tfcompress_recipe.json"


def _wrappers(model):
    """`(name path, child-index path, wrapper)` of each outermost wrapper."""
    refs = walk_layers(model, descend=lambda layer: not isinstance(layer, CompressionWrapper))
    return [
        (
            (ref.path.rpartition("/")[0] + "/" + ref.layer.layer.name).lstrip("/"),
            list(ref.indices),
            ref.layer,
        )
        for ref in refs
        if isinstance(ref.layer, CompressionWrapper)
    ]


def wrapper_recipe(model):
    """The wrappers of `model`, as a JSON-compatible list.

    Args:
        model: a model transformed by `transform_layers`.

    Returns:
        A list of `{"path", "indices", "layer_class", "wrapper"}` dicts: the
        wrapped layer's name path and child-index path, its class name, and
        the wrapper's serialized config without the wrapped layer.
    """
    entries = []
    for path, indices, wrapper in _wrappers(model):
        config = keras.saving.serialize_keras_object(wrapper)
        config["config"].pop("layer", None)
        entries.append(
            {
                "path": path,
                "indices": indices,
                "layer_class": type(wrapper.layer).__name__,
                "wrapper": config,
            }
        )
    return entries


class RecipeHolder(keras.layers.Layer):
    """Weightless layer that writes the model's wrapper recipe when saved."""

    def __init__(self, root, **kwargs):
        super().__init__(name="tfcompress_recipe", **kwargs)
        object.__setattr__(self, "_root_ref", weakref.ref(root))
        self.built = True

    def call(self, inputs):
        return inputs

    def save_assets(self, dir_path):
        root = self._root_ref()
        entries = wrapper_recipe(root) if root is not None else []
        with open(os.path.join(dir_path, RECIPE_FILE), "w") as f:
            json.dump({"format": 2, "wrappers": entries}, f)

    def load_assets(self, dir_path):
        """Nothing to restore: `tfcompress.saving.load_model` reads the file."""


def _config_driven(layer):
    """Sequential and plain functional models keep their layers in config."""
    return type(layer) is keras.Sequential or (
        type(layer).__name__ == "Functional"
        and type(layer).__module__.startswith("keras.")
    )


def needs_recipe(model, replaced_refs):
    """Whether some replaced layer is invisible to the model's own config."""
    return not all(_config_driven(ref.parent) for ref in replaced_refs) or (
        not _config_driven(model)
    )


def has_recipe(model):
    """Whether `attach_recipe` was applied to `model`."""
    return isinstance(getattr(model, RECIPE_ATTRIBUTE, None), RecipeHolder)


_EXISTING = "TfcompressExistingLayer"


def _rewrap(layer, wrapper_config):
    """A wrapper deserialized from `wrapper_config`, wrapping `layer` itself.

    The wrapper goes through its own `from_config`, as in a Sequential load,
    with its "layer" entry resolved to the existing `layer` (which may be
    shared, e.g. a tied embedding) instead of a new one.
    """

    class Existing:
        @classmethod
        def from_config(cls, config):
            return layer

    config = dict(wrapper_config)
    config["config"] = dict(config["config"])
    config["config"]["layer"] = {
        "module": None,
        "class_name": _EXISTING,
        "config": {},
        "registered_name": _EXISTING,
    }
    with keras.saving.custom_object_scope({_EXISTING: Existing}):
        wrapper = keras.saving.deserialize_keras_object(config)
    if not wrapper.built:
        wrapper.build(build_shape_of(layer))
    return wrapper


def _locate(model, indices):
    """`(parent, layer)` at a child-index path, or None when there is none."""
    parent, layer = None, model
    for index in indices:
        children = child_layers(layer)
        if index >= len(children):
            return None
        parent, layer = layer, children[index]
    return parent, layer


def apply_recipe(model, entries):
    """Wraps the layers of a freshly built `model` as `entries` record.

    Layers whose config already restored their wrapper (inside a Sequential
    or functional parent) are left as they are.

    Args:
        model: a model rebuilt from its config, of the recorded model's class.
        entries: the list from `wrapper_recipe` (or a saved recipe file).

    Returns:
        `model`, with the wrappers in place and a recipe attached.

    Raises:
        KeyError: when a recorded layer is not in `model`.
    """
    for entry in entries:
        found = _locate(model, entry["indices"])
        if found and isinstance(found[1], CompressionWrapper):
            continue
        if found is None or type(found[1]).__name__ != entry["layer_class"]:
            raise KeyError(
                f"The recipe wraps the {entry['layer_class']} at "
                f"{entry['path']!r}, which model {model.name!r} does not have: "
                "the model's config no longer builds the same layers."
            )
        parent, layer = found
        replace_layer(parent, layer, _rewrap(layer, entry["wrapper"]))
    return attach_recipe(model)


def attach_recipe(model):
    """Adds a `RecipeHolder` to `model` (once); returns the model."""
    if has_recipe(model):
        return model
    with unlocked(model):
        setattr(model, RECIPE_ATTRIBUTE, RecipeHolder(model))
    return model
