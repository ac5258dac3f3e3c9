"""Importing tfcompress changes no global state."""

import json
import os
import subprocess
import sys

import pytest

_PROBE = """
import json, os
import keras
before_env = dict(os.environ)
before = (keras.config.floatx(), keras.config.image_data_format(),
          keras.config.dtype_policy().name, keras.config.backend())
import tfcompress
after = (keras.config.floatx(), keras.config.image_data_format(),
         keras.config.dtype_policy().name, keras.config.backend())
changed = sorted(k for k in set(before_env) | set(os.environ)
                 if before_env.get(k) != os.environ.get(k))
print(json.dumps({"keras": [before, after], "env": changed,
                  "tfmot": "tensorflow_model_optimization" in __import__("sys").modules}))
"""


def test_import_changes_no_environment_or_keras_config():
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    before, after = result["keras"]
    assert before == after
    assert result["env"] == []
    assert result["tfmot"] is False


# Every subpackage a user may import on its own; all but `cli` are in `__all__`.
_PUBLIC = (
    "core",
    "sparsity",
    "quantization",
    "export",
    "runtime",
    "evaluation",
    "saving",
    "distillation",
    "low_rank",
    "models",
    "data",
)
_SUBPACKAGES = _PUBLIC + ("cli",)


def test_public_subpackages():
    import tfcompress

    assert sorted(tfcompress.__all__) == sorted(_PUBLIC)
    for name in _PUBLIC:
        assert hasattr(tfcompress, name)


_LIBRARY_VARIABLES = ("TF_", "TFCOMPRESS_", "KERAS_", "XLA_", "CUDA_", "OMP_", "ABSL_")

_SUBPACKAGE_PROBE = """
import importlib, json, logging, os, sys
from absl import logging as absl_logging
import keras
import tensorflow as tf


def state():
    return {
        "env": dict(os.environ),
        "keras": {
            "backend": keras.config.backend(),
            "floatx": keras.config.floatx(),
            "dtype_policy": keras.config.dtype_policy().name,
            "image_data_format": keras.config.image_data_format(),
            "epsilon": keras.config.epsilon(),
            "interactive_logging": keras.config.is_interactive_logging_enabled(),
            "traceback_filtering": keras.config.is_traceback_filtering_enabled(),
        },
        "logging": {
            "root": logging.getLogger().level,
            "tensorflow": tf.get_logger().level,
            "absl_verbosity": absl_logging.get_verbosity(),
        },
    }


changes = {}
for name in sys.argv[1:]:
    before = state()
    importlib.import_module("tfcompress." + name)
    after = state()
    changed = {
        group: sorted(k for k in set(before[group]) | set(after[group])
                      if before[group].get(k) != after[group].get(k))
        for group in before
    }
    changes[name] = {group: keys for group, keys in changed.items() if keys}
print(json.dumps(changes))
"""


@pytest.fixture(scope="module")
def import_changes():
    """What importing each existing subpackage changed, in one fresh process.

    TensorFlow and Keras are imported first, so only what tfcompress itself
    changes is reported, for the first subpackage that changes it.
    """

    # Without the variables tfcompress could plausibly set, so one this test
    # process already holds (a test ran code that set it) cannot hide a change.
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LIBRARY_VARIABLES)}
    out = subprocess.run(
        [sys.executable, "-c", _SUBPACKAGE_PROBE, *_SUBPACKAGES],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    changes = json.loads(out.strip().splitlines()[-1])
    assert list(changes) == list(_SUBPACKAGES)
    return changes


@pytest.mark.parametrize("name", _SUBPACKAGES)
def test_importing_a_subpackage_changes_no_environment_keras_or_logging_state(import_changes, name):
    assert import_changes[name] == {}
