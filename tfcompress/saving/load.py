"""Load `.keras` files of compressed models, wrappers included."""

import json
import os
import zipfile

import keras

from tfcompress.core import _keras_internals as internals
from tfcompress.core.registered_classes import import_registered_classes

# So that, with this module imported, `keras.saving.load_model` also finds the
# classes saved files name.
import_registered_classes()

# Where tfcompress recorded the wrappers before they moved into the config.
_OLD_RECIPE_FILE = "tfcompress_recipe.json"


def _check_archive(path):
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            names = archive.namelist()
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as error:
        raise ValueError(
            f"`filepath` {path!r} is not a valid .keras archive ({error}). "
            "Save models with `model.save('name.keras')`."
        ) from error
    # Keras alone would fail on such a file with "A total of N objects could
    # not be loaded", which does not say why.
    if any(internals.is_asset_file(name, _OLD_RECIPE_FILE) for name in names):
        raise ValueError(
            f"`filepath` {path!r} was saved by an earlier tfcompress, which kept the "
            f"compression wrappers in a {_OLD_RECIPE_FILE} asset; this version keeps them "
            "in the model's config and cannot rebuild them from that file. With the "
            "tfcompress that saved it, load it and `model.save_weights('model.weights.h5')`; "
            "then compress the same model again the same way and `load_weights` them."
        )
    return config


def load_model(filepath, custom_objects=None, compile=True):
    """Loads a `.keras` file saved from any tfcompress-compressed model.

    Compressed models record their wrappers in their config, wherever the
    wrappers sit (keras-hub blocks and subclassed models included), so
    `keras.saving.load_model` reads the same files once `tfcompress.saving`
    is imported (it imports the subpackages whose classes files name; the
    top-level `import tfcompress` loads nothing yet). This function also
    checks the path first and imports any other tfcompress module the file
    names (one that needs keras-hub, say). Either way the model is rebuilt,
    the recorded wrappers re-applied, then every weight restored (masks,
    quantization ranges, pruning step and optimizer state included), so
    training resumes exactly where it stopped.

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
            f"`filepath` must be an existing .keras file. Received: filepath={filepath!r}"
        )
    import_registered_classes(_check_archive(filepath))
    return keras.saving.load_model(filepath, custom_objects=custom_objects, compile=compile)
