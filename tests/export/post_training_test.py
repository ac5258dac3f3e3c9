"""Post-training int8 of float transformers through `quantize_model`."""

import contextlib
import io

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import tfcompress.quantization as tq
from tfcompress import export, runtime
from tfcompress.core.layer_tree import walk_layers
from tfcompress.export import post_training, verify, wrap

SEQ = 16
VOCAB = 200
OUTLIER = 5


def _backbone_with_outliers():
    """A random 2-block BERT with a pretrained transformer's outlier dimension:
    channel 5 of every LayerNorm scale 50x, of every FFN output 60x."""
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=SEQ,
    )
    for i in range(2):
        dense = backbone.get_layer(f"transformer_layer_{i}")._feedforward_output_dense
        kernel = dense.kernel.numpy()
        kernel[:, OUTLIER] *= 60.0
        dense.kernel.assign(kernel)
    for layer in backbone._flatten_layers():
        if isinstance(layer, keras.layers.LayerNormalization):
            gamma = layer.gamma.numpy()
            gamma[OUTLIER] *= 50.0
            layer.gamma.assign(gamma)
    return backbone


def _sentences(n, seed):
    """Token dicts as a tokenizer gives them: ids, prefix padding masks, one segment."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, SEQ + 1, size=n)
    mask = (np.arange(SEQ)[None] < lengths[:, None]).astype("int32")
    return {
        "token_ids": (rng.integers(1, VOCAB, size=(n, SEQ)) * mask).astype("int32"),
        "segment_ids": np.zeros((n, SEQ), "int32"),
        "padding_mask": mask,
    }


def _distance(content, model, inputs):
    reference = {k: keras.ops.convert_to_numpy(v) for k, v in model(inputs).items()}
    return 1 - verify.compare(runtime.load(content).run(inputs), reference)["cosine_similarity"]


def _stock_int8(model, calibration):
    converter = tf.lite.TFLiteConverter.from_keras_model(wrap.functional_wrapper(model)[0])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    rows = len(calibration["token_ids"])
    converter.representative_dataset = lambda: (
        {k: v[i : i + 1] for k, v in calibration.items()} for i in range(rows)
    )
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def test_float_transformer_int8_keeps_outlier_channels_where_the_converter_loses_them():
    backbone = _backbone_with_outliers()
    calibration, held_out = _sentences(64, 0), _sentences(32, 1)
    dataset = tf.data.Dataset.from_tensor_slices(calibration).batch(16)

    result = export.to_tflite(backbone, "int8", representative_data=dataset)

    assert result.checks["outputs_match"]["passed"]
    ours = _distance(result.tflite_bytes, backbone, held_out)
    stock = _distance(_stock_int8(backbone, calibration), backbone, held_out)
    # Measured: ours 1.1e-4, the converter's per-tensor calibration 3.9e-3.
    assert ours < 5e-4 and stock > 10 * ours, (ours, stock)
    interpreter = Interpreter(model_content=result.tflite_bytes)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    # quantize_model's matmuls: per-channel int8 1x1 CONV_2D (the converter
    # alone makes FULLY_CONNECTED); the attention core stays float.
    convs = [op for op in ops if op["op_name"] == "CONV_2D"]
    assert len(convs) >= 12 and all(details[op["inputs"][1]]["dtype"] == np.int8 for op in convs)
    assert all(details[op["inputs"][0]]["dtype"] == np.int8 for op in convs)
    assert {details[op["inputs"][0]]["dtype"] for op in ops if op["op_name"] == "GELU"} == {
        np.float32
    }


def test_a_real_mismatch_still_fails_verification(monkeypatch):
    """The file is checked against the user's float model, not the quantized
    copy it was converted from: a copy that went wrong is caught."""
    backbone = _backbone_with_outliers()
    quantize = post_training.quantize_for_int8

    def wrong_copy(*args, **kwargs):
        quantized = quantize(*args, **kwargs)
        table = quantized.token_embedding.layer.embeddings
        table.assign(np.roll(table.numpy(), 1, axis=0))  # every id reads its neighbour's row
        return quantized

    monkeypatch.setattr(post_training, "quantize_for_int8", wrong_copy)
    with pytest.raises(
        export.ExportVerificationError, match="outputs_match: cosine_distance .* > tolerance 0.02"
    ):
        export.to_tflite(backbone, "int8", representative_data=_sentences(32, 0))


def _calibrated(backbone, data):
    quantized = tq.quantize_model(backbone, representative_data=data)
    return {
        ref.path: ref.layer.input_scale.numpy()
        for ref in walk_layers(quantized)
        if getattr(ref.layer, "input_scale", None) is not None
    }


def test_quantize_model_takes_every_form_to_tflite_takes():
    backbone = _backbone_with_outliers()
    data = _sentences(32, 0)
    rows = [{k: v[i : i + 8] for k, v in data.items()} for i in range(0, 32, 8)]
    expected = _calibrated(backbone, data)
    assert len(expected) == 8  # Q/K/V and the FFN input of both blocks read a float LayerNorm
    forms = {
        "callable": lambda: iter(rows),
        "generator": (row for row in rows),
        "list of dicts": rows,
        "dataset of dicts": tf.data.Dataset.from_tensor_slices(data).batch(8),
        "dataset of pairs": tf.data.Dataset.from_tensor_slices((data, np.zeros(32))).batch(8),
    }
    for name, form in forms.items():
        found = _calibrated(backbone, form)
        assert found.keys() == expected.keys(), name
        for path in expected:
            np.testing.assert_allclose(found[path], expected[path], rtol=1e-5, err_msg=name)
    with pytest.raises(
        TypeError,
        match="`representative_data` must be a numpy array.*Received: a callable returning int",
    ):
        tq.quantize_model(backbone, representative_data=lambda: 3)


def test_calibrated_ranges_are_the_mean_of_the_batches_and_dropout_stays_off():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 8))
    hidden = keras.layers.Dropout(0.9)(keras.layers.Dense(8, name="first")(inputs))
    normed = keras.layers.LayerNormalization(name="norm")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(normed))
    quantized = tq.quantize_model(model)
    rng = np.random.default_rng(0)
    batches = [rng.normal(scale=s, size=(4, 4, 8)).astype("float32") for s in (1.0, 3.0)]
    post_training.calibrate_ranges(quantized, batches)
    ranges = post_training._range_variables(quantized)
    (head_low, head_high, initialized) = next(
        r for r in ranges if "head" in r[0].path and "output" in r[0].path
    )
    expected = [
        keras.ops.convert_to_numpy(model(batch, training=False)) for batch in batches
    ]  # no dropout: the float model at inference
    np.testing.assert_allclose(
        head_high.numpy(), np.mean([max(0, e.max()) for e in expected]), rtol=0.05
    )
    np.testing.assert_allclose(
        head_low.numpy(), np.mean([min(0, e.min()) for e in expected]), rtol=0.05
    )
    assert initialized.numpy() == 1.0


def test_cnns_keep_the_converters_calibration(monkeypatch, conv_model, calibration_data):
    assert not post_training.is_transformer(conv_model)
    assert post_training.is_transformer(_backbone_with_outliers())

    def refuse(*args, **kwargs):
        raise AssertionError("a CNN went through quantize_model")

    monkeypatch.setattr(post_training, "quantize_for_int8", refuse)
    result = export.to_tflite(conv_model, "int8", representative_data=calibration_data(conv_model))
    assert "FULLY_CONNECTED" in result.ops and result.checks["outputs_match"]["passed"]


def test_a_model_that_cannot_be_copied_keeps_the_converters_calibration_and_says_so(caplog):
    class Net(keras.Model):  # not registered, and variadic arguments no config can hold
        def __init__(self, *widths):
            super().__init__(name="net")
            self.dense = keras.layers.Dense(widths[0])
            self.norm = keras.layers.LayerNormalization()
            self.head = keras.layers.Dense(4)

        def call(self, x):
            return self.head(self.norm(self.dense(x)))

    net = Net(16)
    net(np.zeros((2, 8, 6), "float32"))
    data = np.random.default_rng(0).normal(size=(32, 8, 6)).astype("float32")
    with caplog.at_level("WARNING", logger="tfcompress"):
        result = export.to_tflite(net, "int8", representative_data=data)
    assert result.checks["outputs_match"]["passed"]
    assert (
        "calibrating with the converter's per-tensor ranges" in caplog.text and "Net" in caplog.text
    )
    assert "FULLY_CONNECTED" in result.ops  # the converter's matmuls, not quantize_model's CONV_2D
