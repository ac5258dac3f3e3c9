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

from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.wrapper import CompressionWrapper

RECIPE_ATTRIBUTE = "_tfcompress_recipe"
RECIPE_FILE = "recipe.json"


def wrapper_recipe(model):
    """`[{"path": inner layer path, "config": wrapper config}]` for `model`."""
    entries = []
    refs = walk_layers(model, descend=lambda l: not isinstance(l, CompressionWrapper))
    for ref in refs:
        wrapper = ref.layer
        if not isinstance(wrapper, CompressionWrapper):
            continue
        parent_path = ref.path.rsplit("/", 1)[0] if "/" in ref.path else ""
        inner_name = wrapper.layer.name
        path = f"{parent_path}/{inner_name}" if parent_path else inner_name
        config = keras.saving.serialize_keras_object(wrapper)
        config["config"].pop("layer", None)
        entries.append({"path": path, "wrapper": config})
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
            json.dump({"format": 1, "wrappers": entries}, f)

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


def attach_recipe(model):
    """Adds a `RecipeHolder` to `model` (once); returns the model."""
    if isinstance(getattr(model, RECIPE_ATTRIBUTE, None), RecipeHolder):
        return model
    tracker = getattr(model, "_tracker", None)
    locked = bool(tracker and tracker.locked)
    if tracker is not None:
        tracker.unlock()
    try:
        setattr(model, RECIPE_ATTRIBUTE, RecipeHolder(model))
    finally:
        if locked:
            tracker.lock()
    return model
