import contextlib
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import export, runtime
from tfcompress.export import flatbuffer, int16x8, wrap


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_stock_converter_fails_on_integer_inputs(bert_backbone, bert_inputs):
    """The premise of the work-around; if TensorFlow fixes it, this test says so."""
    wrapper, _ = wrap.functional_wrapper(bert_backbone)
    data = bert_inputs(n=4)
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        {k: v[i : i + 1] for k, v in data.items()} for i in range(4)
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
    ]
    with (
        pytest.raises(Exception, match="Max and min for dynamic tensors should be recorded"),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        converter.convert()


def test_bert_backbone_exports_int16x8(bert_backbone, bert_inputs):
    result = export.to_tflite(
        bert_backbone,
        target="int16x8",
        representative_data=bert_inputs(n=32, seed=1),
        sample=bert_inputs(n=4, seed=2),
    )
    assert all(check["passed"] for check in result.checks.values()), result.checks
    assert result.cosine_similarity > 0.999
    # Integer index arithmetic and the attention mask stay as they were; the
    # LayerNorm variance runs in float (no int16 SQUARED_DIFFERENCE kernel).
    assert result.checks["builtin_ops"]["float_ops"] == [
        "NEG",
        "SELECT_V2",
        "SQUARED_DIFFERENCE",
    ]
    model = flatbuffer.read_model(result.tflite_bytes)
    subgraph = model.subgraphs[0]
    types = {flatbuffer.type_name(t) for t in subgraph.tensors if not flatbuffer.has_data(model, t)}
    assert "INT16" in types
    # Token ids stay int32 end to end.
    for index in subgraph.inputs:
        assert flatbuffer.type_name(subgraph.tensors[index]) == "INT32"
    matmuls = [
        op for op in subgraph.operators if flatbuffer.op_name(model, op) == "FULLY_CONNECTED"
    ]
    assert matmuls and all(
        flatbuffer.type_name(subgraph.tensors[op.inputs[0]]) == "INT16" for op in matmuls
    )


def test_layer_norm_variance_runs_in_float_and_io_can_be_int16():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16),
            keras.layers.LayerNormalization(),
            keras.layers.Dense(4),
        ]
    )
    data = np.random.default_rng(0).random((64, 8), dtype=np.float32)
    result = export.to_tflite(model, "int16x8", representative_data=data, int8_io=True)
    assert result.checks["outputs_match"]["passed"]
    tflite = flatbuffer.read_model(result.tflite_bytes)
    subgraph = tflite.subgraphs[0]
    for op in subgraph.operators:
        if flatbuffer.op_name(tflite, op) == "SQUARED_DIFFERENCE":
            operands = list(op.inputs) + list(op.outputs)
            assert {flatbuffer.type_name(subgraph.tensors[i]) for i in operands} == {"FLOAT32"}
    loaded = runtime.load(result.tflite_bytes)
    assert loaded.input_details[0]["dtype"] == np.int16
    assert loaded.output_details[0]["dtype"] == np.int16
    x = data[:8]
    expected = model(x).numpy()
    outputs = loaded.run(x)
    assert np.max(np.abs(outputs - expected)) < 0.05 * np.max(np.abs(expected))


def test_masked_softmax_keeps_its_precision(monkeypatch):
    scores = keras.Input((8,), name="scores")
    mask = keras.Input((8,), dtype="int32", name="mask")
    probabilities = keras.layers.Softmax()(scores, mask=keras.ops.cast(mask, "bool"))
    model = keras.Model([scores, mask], probabilities)
    rng = np.random.default_rng(0)

    def batch(n):
        lengths = rng.integers(2, 9, size=n)
        return {
            "scores": 3 * rng.normal(size=(n, 8)).astype(np.float32),
            "mask": (np.arange(8)[None] < lengths[:, None]).astype(np.int32),
        }

    data, sample = batch(64), batch(16)
    result = export.to_tflite(model, "int16x8", representative_data=data, sample=sample)
    assert result.max_abs_error < 2e-3
    # Without the softmax window the -1e9 of the mask takes the int16 range.
    monkeypatch.setattr(int16x8, "SOFTMAX_WINDOW", float("inf"))
    with pytest.raises(export.ExportVerificationError, match="outputs_match"):
        export.to_tflite(model, "int16x8", representative_data=data, sample=sample)
