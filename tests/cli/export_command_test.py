"""`tfcompress export --target=int8 --c_array=NAME`: flash, arena and the TFLM check."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfcompress.cli import digits

pytest.importorskip("tflite_micro", reason="needs tflite-micro: pip install -e '.[micro]'")


def _tfcompress(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "tfcompress.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits CNN trained 2 epochs, saved as .keras, and 64 training digits as .npy."""
    out = tmp_path_factory.mktemp("export")
    x_train, y_train, _, _ = digits.load_digits(0)
    keras.utils.set_random_seed(0)
    model = digits.build_digits_cnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=2, verbose=0)
    model.save(out / "cnn.keras")
    np.save(out / "calibration.npy", x_train[:64])
    return out


def test_int8_c_array_prints_flash_measured_arena_and_tflm_check(trained):
    result = _tfcompress(
        "export",
        f"--model={trained / 'cnn.keras'}",
        "--target=int8",
        "--int8_io",
        f"--representative={trained / 'calibration.npy'}",
        f"--output={trained / 'cnn_int8.tflite'}",
        "--c_array=cnn_model",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    size = (trained / "cnn_int8.tflite").stat().st_size
    assert f"  flash {size:,} bytes (the model array)" in result.stdout
    arena = re.search(r"  tensor arena ([\d,]+) bytes: TFLM measured ([\d,]+)", result.stdout)
    assert arena, result.stdout
    assert int(arena.group(1).replace(",", "")) >= int(arena.group(2).replace(",", ""))
    assert re.search(
        r"  TFLM check: 16 random inputs run in TFLite Micro, outputs vs LiteRT max [01] LSB",
        result.stdout,
    )
    header = (trained / "cnn_model.h").read_text()
    assert f"cnn_model_arena_size = {arena.group(1).replace(',', '')};" in header


def test_dynamic_range_c_array_fails_with_the_tflm_op(trained):
    result = _tfcompress(
        "export",
        f"--model={trained / 'cnn.keras'}",
        "--target=dynamic_int8",
        f"--output={trained / 'cnn_dynamic.tflite'}",
        "--c_array=cnn_dynamic",
    )
    assert result.returncode != 0
    assert re.search(
        r"TensorFlow Lite Micro cannot prepare op \w+ \(op #\d+; inputs \['FLOAT32', 'INT8'",
        result.stderr,
    )
    assert "float op left in an integer model" in result.stderr
    assert not (trained / "cnn_dynamic.h").exists()
