import pathlib

import numpy as np
import pytest

from tfcompress import runtime


def test_load_accepts_bytes_str_and_path(tmp_path, dense_tflite):
    file = tmp_path / "dense.tflite"
    file.write_bytes(dense_tflite)
    for source in (dense_tflite, str(file), pathlib.Path(file)):
        model = runtime.load(source, num_threads=1)
        assert model.backend == "ai_edge_litert"
        assert model.num_threads == 1
        assert model.model_content == dense_tflite
    assert runtime.load(file).path == str(file)
    assert runtime.load(dense_tflite).path is None


def test_tensorflow_backend_runs_the_same(dense_tflite):
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    litert = runtime.load(dense_tflite)
    tf_lite = runtime.load(dense_tflite, backend="tensorflow")
    assert tf_lite.backend == "tensorflow"
    np.testing.assert_allclose(tf_lite.run(x), litert.run(x), rtol=1e-5, atol=1e-6)


def test_run_matches_keras_and_resizes_the_batch(small_dense_model, dense_tflite):
    model = runtime.load(dense_tflite)
    rng = np.random.default_rng(0)
    for batch in (1, 7, 2):
        x = rng.normal(size=(batch, 6)).astype(np.float32)
        y = model.run(x)
        assert y.shape == (batch, 3)
        np.testing.assert_allclose(y, small_dense_model(x).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.run({"features": x}), model.run([x]))
    tensor_name = model.input_details[0]["name"]
    assert tensor_name == "serving_default_features:0"
    np.testing.assert_allclose(model.run({tensor_name: x}), model.run(x))


def test_models_without_signatures_run_on_tensor_names(small_dense_model, unsigned_tflite):
    model = runtime.load(unsigned_tflite)
    assert model.signatures == {}
    x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    expected = small_dense_model(x).numpy()
    np.testing.assert_allclose(model.run(x), expected, rtol=1e-5, atol=1e-5)
    name = model.input_details[0]["name"]
    np.testing.assert_allclose(model.run({name: x[:2]}), expected[:2], rtol=1e-5, atol=1e-5)


def test_details_signatures_ops_and_dtypes(dense_tflite):
    model = runtime.load(dense_tflite)
    assert model.signatures == {
        "serving_default": {"inputs": ["features"], "outputs": ["output_0"]}
    }
    assert [list(d["shape_signature"]) for d in model.input_details] == [[-1, 6]]
    assert model.output_details[0]["dtype"] == np.float32
    assert model.ops() == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    assert set(model.tensor_dtypes().values()) == {"float32"}
    model.run(np.zeros((1, 6), np.float32))
    # The default delegate adds "DELEGATE" nodes once tensors are allocated.
    assert model.ops() == ["FULLY_CONNECTED", "FULLY_CONNECTED"]


def test_quantized_io_round_trip(small_dense_model, int8_tflite):
    model = runtime.load(int8_tflite)
    assert model.input_details[0]["dtype"] == np.int8
    assert model.output_details[0]["dtype"] == np.int8
    assert set(model.tensor_dtypes().values()) <= {"int8", "int32"}
    x = np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)
    y = model.run(x)
    reference = small_dense_model(x).numpy()
    assert y.dtype == np.float32
    scale = model.output_details[0]["quantization"][0]
    # A few output quantization steps: input, hidden and output rounding.
    assert np.max(np.abs(y - reference)) < 6 * scale
    assert np.mean(y.argmax(-1) == reference.argmax(-1)) >= 0.9

    raw = model.run(x.astype(np.int8), raw=True)
    assert raw.dtype == np.int8
    with pytest.raises(TypeError, match="expects int8"):
        model.run(x, raw=True)


def test_integer_inputs_and_several_outputs(two_input_model, two_input_tflite):
    model = runtime.load(two_input_tflite)
    ids = np.random.default_rng(2).integers(0, 20, size=(3, 5)).astype(np.int64)
    scale = np.full((3, 1), 2.0, np.float32)
    outputs = model.run({"ids": ids, "scale": scale})
    assert model.signatures["serving_default"]["inputs"] == ["ids", "scale"]
    np.testing.assert_array_equal(model.run([ids, scale])["logits"], outputs["logits"])
    reference = two_input_model([ids, scale])
    assert set(outputs) == {"logits", "embedding"}
    for name in outputs:
        np.testing.assert_allclose(outputs[name], reference[name].numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="'.*ids.*' expects int32"):
        model.run({"ids": ids.astype(np.float32) + 0.5, "scale": scale})
    with pytest.raises(ValueError, match="Missing: \\['scale'\\]"):
        model.run({"ids": ids})
    with pytest.raises(ValueError, match="pass a list or a dict"):
        model.run(ids)


def test_several_signatures(two_signature_tflite):
    model = runtime.load(two_signature_tflite)
    assert set(model.signatures) == {"add_one", "double"}
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(model.run(x, signature="add_one"), x + 1)
    np.testing.assert_allclose(model.run({"x": x}, signature="double"), x * 2)
    with pytest.raises(ValueError, match="several signatures"):
        model.run(x)
    with pytest.raises(ValueError, match="`signature` must be one of"):
        model.run(x, signature="triple")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a model at all", b"\x00" * 64, b"PK\x03\x04" + b"\x00" * 60],
    ids=["empty", "text", "zeros", "zip"],
)
def test_non_flatbuffer_files_raise_value_error(tmp_path, content):
    file = tmp_path / "broken.tflite"
    file.write_bytes(content)
    with pytest.raises(ValueError, match=r"broken\.tflite.*not a valid TFLite flatbuffer"):
        runtime.load(file)


def test_truncated_or_damaged_flatbuffer_raises_value_error(dense_tflite):
    for cut in (8, 64, len(dense_tflite) // 2, len(dense_tflite) - 16):
        with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
            runtime.load(dense_tflite[:cut])
    damaged = bytearray(dense_tflite)
    damaged[8:40] = b"\xff" * 32
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        runtime.load(bytes(damaged))


def test_argument_errors(tmp_path, dense_tflite):
    with pytest.raises(ValueError, match="not an existing file"):
        runtime.load(tmp_path / "missing.tflite")
    with pytest.raises(TypeError, match="Received: model of type int"):
        runtime.load(3)
    with pytest.raises(ValueError, match="num_threads"):
        runtime.load(dense_tflite, num_threads=0)
    with pytest.raises(ValueError, match="`backend` must be one of"):
        runtime.load(dense_tflite, backend="onnx")
