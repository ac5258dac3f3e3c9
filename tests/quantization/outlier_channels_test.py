"""Outlier channels: found on data, computed with their own int8 scale."""

import collections

import keras
import numpy as np
import pytest

import tfcompress.quantization as tq
from tfcompress.quantization.outlier_channels import find_outlier_channels, select_channels

_OUTLIERS = [5, 30]


def _model_with_outliers():
    """Dense(48) on (16, 32) inputs whose channels 5 and 30 are ~40x larger."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 32))
    hidden = keras.layers.Dense(48, name="big")(inputs)
    outputs = keras.layers.LayerNormalization(name="norm")(hidden)
    model = keras.Model(inputs, outputs)
    kernel = model.get_layer("big").kernel.numpy()
    kernel[:, _OUTLIERS] *= 40.0
    model.get_layer("big").kernel.assign(kernel)
    return model


def _int8_export_op_kinds(model, x, names):
    """`{(op name, first input dtype): count}` of the verified int8 export."""
    from ai_edge_litert.interpreter import Interpreter

    from tfcompress.export import to_tflite

    result = to_tflite(model, target="int8", sample=x[:4])  # verifies outputs against Keras
    assert result.checks["outputs_match"]["passed"]
    interpreter = Interpreter(model_content=result.tflite_bytes)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    return collections.Counter(
        (op["op_name"], np.dtype(details[op["inputs"][0]]["dtype"]).name)
        for op in interpreter._get_ops_details()
        if op["op_name"] in names
    )


def _data(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 16, 32)).astype("float32")


def test_select_channels_takes_the_largest_above_the_ratio():
    span = np.ones(10)
    span[[2, 7, 9]] = [100.0, 9.0, 50.0]
    assert select_channels(span, 8.0, 8) == [2, 7, 9]
    assert select_channels(span, 8.0, 2) == [2, 9]
    assert select_channels(span, 200.0, 8) == []


def test_finds_the_planted_channels_and_leaves_the_model_as_it_was():
    model = _model_with_outliers()
    before = model.predict(_data(8), verbose=0)
    assert find_outlier_channels(model, _data()) == {"big": {"outlier_channels": _OUTLIERS}}
    assert "call" not in vars(model.get_layer("big"))  # the recording call is removed
    np.testing.assert_array_equal(model.predict(_data(8), verbose=0), before)


def test_finds_outliers_inside_keras_hub_attention():
    import testing

    backbone = testing.bert_backbone()
    dense = backbone.get_layer("transformer_layer_0")._feedforward_output_dense
    kernel = dense.kernel.numpy()
    kernel[:, 3] *= 50.0
    dense.kernel.assign(kernel)
    found = find_outlier_channels(backbone, testing.token_inputs(batch=8), ratio=8.0)
    assert found["transformer_layer_0/feedforward_output_dense"]["outlier_channels"] == [3]


def test_split_cuts_the_error_of_outlier_channels():
    model = _model_with_outliers()
    x = _data()
    reference = model.predict(x, verbose=0)
    errors = {}
    for name, data in (("split", x), ("plain", None)):
        qat = tq.quantize_model(model, representative_data=data)
        qat(x, training=True)  # sets the activation ranges
        errors[name] = np.abs(qat.predict(x, verbose=0) - reference).mean()
    assert qat.get_layer("quant_big").outlier_channels == ()
    assert errors["split"] < errors["plain"] / 3, errors


def test_per_layer_outlier_channels_win_over_the_found_ones():
    model = _model_with_outliers()
    qat = tq.quantize_model(model, per_layer={"big": {"outlier_channels": [5]}}, representative_data=_data())
    assert qat.get_layer("quant_big").outlier_channels == (5,)


def test_split_model_converts_to_int8_and_matches_keras(tmp_path):
    from tfcompress.saving import load_model

    x = _data()
    qat = tq.quantize_model(_model_with_outliers(), representative_data=x)
    qat(x, training=True)
    path = tmp_path / "split.keras"
    qat.save(path)
    reloaded = load_model(path)
    assert reloaded.get_layer("quant_big").outlier_channels == tuple(_OUTLIERS)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), qat.predict(x, verbose=0))
    kinds = _int8_export_op_kinds(qat, x, ("FULLY_CONNECTED", "PAD", "GATHER"))
    # One int8 PAD per outlier channel puts it back in place (no GATHER: XNNPack does not take it).
    assert kinds == {("FULLY_CONNECTED", "int8"): 2, ("PAD", "int8"): 2}, kinds


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ratio=1.0), "`ratio` must be greater than 1"),
        (dict(max_channels=0), "`max_channels` must be a positive integer"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_outlier_channels(_model_with_outliers(), _data(), **kwargs)


def test_data_errors():
    with pytest.raises(TypeError, match="`representative_data` must be an array"):
        find_outlier_channels(_model_with_outliers(), 3)
    with pytest.raises(ValueError, match="produced no batches"):
        find_outlier_channels(_model_with_outliers(), iter([]))


def test_a_dense_after_a_split_quantizes_its_float_input():
    """The split's halves are added in float; a Dense reading that sum must
    quantize its input, or it would convert to a float FULLY_CONNECTED."""
    model = _model_with_outliers()
    inputs = keras.Input((16, 32))
    hidden = model.get_layer("big")(inputs)
    outputs = keras.layers.Dense(4, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    split = tq.quantize_model(model, representative_data=_data())
    assert split.get_layer("quant_big").outlier_channels == tuple(_OUTLIERS)
    assert split.get_layer("quant_head").input_quantizer is not None
    plain = tq.quantize_model(model)
    assert plain.get_layer("quant_head").input_quantizer is None


def _ffn_with_input_outliers():
    """Dense(64, gelu) -> Dense(32): hidden unit 7 is ~30x the others."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 32))
    hidden = keras.layers.Dense(64, activation="gelu", name="up")(inputs)
    outputs = keras.layers.Dense(32, name="down")(hidden)
    model = keras.Model(inputs, outputs)
    up = model.get_layer("up")
    kernel, bias = up.kernel.numpy(), up.bias.numpy()
    kernel[:, 7] *= 30.0
    bias[7] = 20.0
    up.kernel.assign(kernel)
    up.bias.assign(bias)
    return model


def test_gelu_outliers_are_split_at_the_next_matmul_input():
    model = _ffn_with_input_outliers()
    x = _data()
    found = find_outlier_channels(model, x)
    assert found["down"]["input_outlier_channels"] == [7]
    assert found["up"] == {"quantize_output": False}
    reference = model.predict(x, verbose=0)
    errors = {}
    for name, data in (("split", x), ("plain", None)):
        # "up" left float: the difference is the quantization of down's input.
        qat = tq.quantize_model(model, per_layer={"up": {"skip": True}}, representative_data=data)
        qat(x, training=True)
        errors[name] = np.abs(qat.predict(x, verbose=0) - reference).mean()
    assert errors["split"] < errors["plain"] / 3, errors
    split = tq.quantize_model(model, representative_data=x)
    split(x, training=True)
    assert split.get_layer("quant_down").input_outlier_channels == (7,)
    assert not split.get_layer("quant_up").quantize_config.quantize_output
    kinds = _int8_export_op_kinds(split, x, ("FULLY_CONNECTED", "GELU"))
    # up, down's ordinary channels, down's outlier rows: all int8; GELU float.
    assert kinds == {("FULLY_CONNECTED", "int8"): 3, ("GELU", "float32"): 1}, kinds
