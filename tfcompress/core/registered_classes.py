"""Registering with Keras every tfcompress class a saved model can name."""

import importlib
import importlib.util
import re

import tfcompress

_OWN_MODULE = re.compile(r"tfcompress(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _named_modules(config):
    """Every `tfcompress.*` module a serialized Keras config names."""
    found = set()
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            module = item.get("module")
            if isinstance(module, str) and _OWN_MODULE.fullmatch(module):
                found.add(module)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return sorted(found)


def import_registered_classes(config=None, *, subpackages=True):
    """Imports the tfcompress modules whose classes saved models name.

    Keras finds a registered class at load only once the module defining it
    was imported. This imports the subpackages in
    `tfcompress.SAVED_CLASS_SUBPACKAGES` and, given a saved model's config,
    each tfcompress module that config names (so a new technique's classes
    load without being listed anywhere). Saving and export stay free of
    technique names: the list lives in `tfcompress/__init__.py`.

    Args:
        config: a serialized Keras config (dicts and lists, e.g. a `.keras`
            file's `config.json`), or None.
        subpackages: also import every subpackage in
            `tfcompress.SAVED_CLASS_SUBPACKAGES`; False imports only what
            `config` names (a pruned model's file names no quantization class).

    Returns:
        The names of the modules imported for `config` (sorted).

    Example:

    ```python
    tfcompress.core.import_registered_classes()
    model = keras.saving.load_model("pruned.keras")
    ```
    """
    for name in tfcompress.SAVED_CLASS_SUBPACKAGES if subpackages else ():
        importlib.import_module(f"tfcompress.{name}")
    named = [m for m in _named_modules(config or {}) if _importable(m)]
    for module in named:
        importlib.import_module(module)
    return named


def _importable(module):
    # A file saved by another tfcompress version may name a module this one
    # does not have; Keras then says which class it cannot find.
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False
