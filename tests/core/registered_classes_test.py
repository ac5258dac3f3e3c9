import importlib
import json
import sys

import keras
import pytest

import tfcompress
from tfcompress.core import import_registered_classes
from tfcompress.core.registered_classes import _named_modules

import testing


def test_every_registered_class_is_imported_for_loading():
    # With every subpackage imported, each class registered under "tfcompress>"
    # lives in core, in a listed subpackage, or in a module loaded when a file
    # names it (keras-hub subclasses in `models`).
    for name in tfcompress.__all__:
        if name != "cli":
            importlib.import_module(f"tfcompress.{name}")
    on_demand = {"models"}
    for registered, cls in keras.saving.get_custom_objects().items():
        if not registered.startswith("tfcompress>"):
            continue
        package = cls.__module__.split(".")[1]
        assert package == "core" or package in tfcompress.SAVED_CLASS_SUBPACKAGES + tuple(
            on_demand
        ), f"{registered} ({cls.__module__}): add {package!r} to tfcompress.SAVED_CLASS_SUBPACKAGES"


def test_modules_named_in_a_config_are_imported():
    config = {
        "module": "keras.layers",
        "config": {
            "layers": [
                {"module": "tfcompress.models.llama3", "class_name": "Llama3Backbone"},
                {"module": "tfcompress.no_such_module", "class_name": "X"},
                {"module": "tfcompress.sparsity.pruning_wrapper", "config": {"module": "os"}},
            ]
        },
    }
    assert _named_modules(config) == [
        "tfcompress.models.llama3",
        "tfcompress.no_such_module",
        "tfcompress.sparsity.pruning_wrapper",
    ]
    assert import_registered_classes(config) == [
        "tfcompress.models.llama3",
        "tfcompress.sparsity.pruning_wrapper",
    ]
    assert "tfcompress.models.llama3" in sys.modules
    assert import_registered_classes() == []


@pytest.mark.parametrize("bad", ["tfcompress", "os", "tfcompress..x", "tfcompress.x; import os"])
def test_only_tfcompress_modules_are_named(bad):
    assert _named_modules({"module": bad}) == []


def test_fresh_process_imports_the_listed_subpackages_and_not_models():
    out = testing.run_python("""
import json, sys
from tfcompress.core import import_registered_classes
import_registered_classes()
print(json.dumps(sorted(m for m in sys.modules if m.count(".") <= 1
                        and m.startswith(("tfcompress.", "keras_hub")))))
""")
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert {f"tfcompress.{name}" for name in tfcompress.SAVED_CLASS_SUBPACKAGES} <= loaded
    # tfcompress.sparsity imports keras-hub itself (its pruned attention
    # layers subclass keras-hub's), so only the GGUF model code stays unloaded.
    assert "tfcompress.models" not in loaded
