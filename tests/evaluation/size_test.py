import gzip
import os
import pathlib

import keras
import numpy as np
import pytest

from tfcompress import evaluation


def _dense_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])


def test_bytes_raw_and_gzip_match_gzip_module():
    data = np.random.default_rng(0).integers(0, 4, 50_000, dtype=np.uint8).tobytes()
    size = evaluation.model_size(data)
    assert size["raw_bytes"] == 50_000
    # Same deflate at level 9; the headers may differ by a few bytes.
    assert abs(size["gzip_bytes"] - len(gzip.compress(data, 9, mtime=0))) <= 16


def test_file_of_zeros_gzips_much_smaller_than_random(tmp_path):
    zeros = tmp_path / "zeros.tflite"
    zeros.write_bytes(bytes(1_000_000))
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).bytes(1_000_000))
    zero_size = evaluation.model_size(str(zeros))
    noise_size = evaluation.model_size(noise)
    assert zero_size["raw_bytes"] == noise_size["raw_bytes"] == 1_000_000
    assert zero_size["gzip_bytes"] < 0.01 * zero_size["raw_bytes"]
    assert noise_size["gzip_bytes"] > 0.99 * noise_size["raw_bytes"]


def test_directory_sums_its_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.bin").write_bytes(bytes(1000))
    (tmp_path / "sub" / "b.bin").write_bytes(bytes(3000))
    size = evaluation.model_size(tmp_path)
    assert size["raw_bytes"] == 4000
    a = evaluation.model_size(tmp_path / "a.bin")["gzip_bytes"]
    b = evaluation.model_size(tmp_path / "sub" / "b.bin")["gzip_bytes"]
    assert size["gzip_bytes"] == a + b


def test_keras_file(tmp_path):
    path = tmp_path / "m.keras"
    _dense_model().save(path)
    size = evaluation.model_size(path)
    assert size["raw_bytes"] == os.path.getsize(path)
    assert 0 < size["gzip_bytes"]


def test_keras_model_counts_parameters():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()]
    )
    size = evaluation.model_size(model)
    # Dense 4*3+3 = 15; BatchNorm gamma, beta trainable (6), moving stats not (6).
    assert size["params"] == 27
    assert size["trainable_params"] == 21
    assert size["non_trainable_params"] == 6
    assert size["float32_bytes"] == 27 * 4
    assert size["stored_bytes"] == 27 * 4


def test_keras_model_stored_bytes_shrink_after_int8_quantize():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    model.quantize("int8")
    size = evaluation.model_size(model)
    assert size["stored_bytes"] < 0.5 * size["float32_bytes"]


def test_errors():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluation.model_size(pathlib.Path("/nonexistent/model.tflite"))
    with pytest.raises(ValueError, match="not built"):
        evaluation.model_size(keras.Sequential([keras.layers.Dense(2)]))
    with pytest.raises(TypeError, match="Received: obj=3"):
        evaluation.model_size(3)
