"""Load `.keras` files of compressed models, wrappers included."""

import json
import os
import re
import zipfile

import keras

from tfcompress.core.recipe import RECIPE_ATTRIBUTE, RECIPE_FILE, apply_recipe


def _read_archive(path):
    """`(config, recipes)`: the model config and each recipe with the asset
    path segments of the layer that held it."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            recipes = [
                (name.split("/")[1:-1], json.loads(archive.read(name)))
                for name in archive.namelist()
                if name.startswith("assets/") and name.endswith("/" + RECIPE_FILE)
            ]
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(
            f"`filepath` {path!r} is not a valid .keras archive ({error}). "
            "Save models with `model.save('name.keras')`."
        ) from error
    return config, recipes


def _snake_case(name):
    """Keras's name for an unnamed saveable in a container, from its class."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _follow(model, segments):
    """The object at a `.keras` asset path in `model`, or None.

    Keras names what it saves by attribute (`layers` of a functional model,
    then attribute names) and, inside lists, by snake-cased class name with
    `_1`, `_2`... for repeats; this follows the same names.
    """
    node = model
    for segment in segments:
        if isinstance(node, (list, tuple, dict)):
            items = list(node.values()) if isinstance(node, dict) else list(node)
            used, found = {}, None
            for item in items:
                if isinstance(item, (list, tuple, dict)):
                    base = "container"
                elif hasattr(item, "_obj_type"):  # a KerasSaveable
                    base = _snake_case(type(item).__name__)
                else:
                    continue
                used[base] = used.get(base, -1) + 1
                if (f"{base}_{used[base]}" if used[base] else base) == segment:
                    found = item
                    break
            node = found
        elif segment == "layers" and isinstance(node, keras.Model):
            node = node.layers
        else:
            node = getattr(node, segment, None)
        if node is None:
            return None
    return node


def _owner(model, segments):
    """The layer whose recipe holder was saved at `segments`.

    The holder is the owner's `_tfcompress_recipe` attribute, or, in
    subclassed models, an entry of its layer list.
    """
    if segments and segments[-1] == RECIPE_ATTRIBUTE:
        candidates = [segments[:-1]]
    else:
        candidates = [segments[:-2], segments[:-1]]
    for path in candidates:
        owner = _follow(model, path)
        if isinstance(owner, keras.layers.Layer):
            return owner
    raise ValueError(
        "The .keras file records compression wrappers for the layer saved at "
        f"{'/'.join(candidates[0])!r}, which the model rebuilt from its config does "
        "not have. Load the file in the program that defines the model's "
        "custom classes, or pass them in `custom_objects`."
    )


def load_model(filepath, custom_objects=None, compile=True):
    """Loads a `.keras` file saved from any tfcompress-compressed model.

    Plain Sequential and functional models hold their wrappers in their config
    and load with `keras.saving.load_model` too. Models whose wrappers sit
    inside layers that rebuild from hyperparameters (keras-hub backbones,
    subclassed models) need this function: it rebuilds the model, re-applies
    the recorded wrappers, then restores every weight (masks, quantization
    ranges, pruning step and optimizer state included), so training resumes
    exactly where it stopped.

    Args:
        filepath: path of a `.keras` file.
        custom_objects: as in `keras.saving.load_model`.
        compile: restore the compile state (optimizer included).

    Returns:
        The model, of its original class, wrappers in place.

    Raises:
        ValueError: when the file is missing or not a `.keras` archive, or
            when a layer that held wrappers is not in the rebuilt model.
        KeyError: when a recorded wrapper's layer is not in the rebuilt model.

    Example:

    ```python
    pruned.save("mid_pruning.keras")
    model = tfcompress.saving.load_model("mid_pruning.keras")
    ```
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath) or not filepath.endswith(".keras"):
        raise ValueError(
            f"`filepath` must be an existing .keras file. Received: "
            f"filepath={filepath!r}"
        )
    config, recipes = _read_archive(filepath)
    if not recipes:
        return keras.saving.load_model(
            filepath, custom_objects=custom_objects, compile=compile
        )
    compile_config = config.pop("compile_config", None)
    with keras.saving.custom_object_scope(custom_objects or {}):
        model = keras.saving.deserialize_keras_object(config)
        # Innermost first: an outer recipe also lists the inner wrappers, and
        # skips those already in place.
        for segments, recipe in sorted(recipes, key=lambda r: -len(r[0])):
            apply_recipe(_owner(model, segments), recipe["wrappers"])
        if compile and compile_config:
            model.compile_from_config(compile_config)
    model.load_weights(filepath)
    return model
