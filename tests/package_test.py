"""Importing tfcompress changes no global state."""

import json
import subprocess
import sys

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


def test_public_subpackages():
    import tfcompress

    for name in ("sparsity", "quantization", "export", "runtime", "evaluation", "saving", "models"):
        assert name in tfcompress.__all__
        assert hasattr(tfcompress, name)
