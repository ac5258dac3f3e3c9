"""Load `.keras` files of compressed models, wrappers included."""

import json
import os
import zipfile

import keras

from tfcompress.core.recipe import RECIPE_FILE, apply_recipe


def _read_archive(path):
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            # Keras stores the holder's assets under the first attribute path
            # that reaches it (`layers/...` in subclassed models).
            members = [
                name
                for name in archive.namelist()
                if name.startswith("assets/") and name.endswith("/" + RECIPE_FILE)
            ]
            recipe = json.loads(archive.read(members[0])) if members else None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(
            f"`filepath` {path!r} is not a valid .keras archive ({error}). "
            "Save models with `model.save('name.keras')`."
        ) from error
    return config, recipe


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
        ValueError: when the file is missing or not a `.keras` archive.
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
    config, recipe = _read_archive(filepath)
    if recipe is None:
        return keras.saving.load_model(
            filepath, custom_objects=custom_objects, compile=compile
        )
    compile_config = config.pop("compile_config", None)
    with keras.saving.custom_object_scope(custom_objects or {}):
        model = keras.saving.deserialize_keras_object(config)
        apply_recipe(model, recipe["wrappers"])
        if compile and compile_config:
            model.compile_from_config(compile_config)
    model.load_weights(filepath)
    return model
