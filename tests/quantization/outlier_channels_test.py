"""Outlier channels: found on data, computed with their own int8 scale."""

import collections

import keras
import numpy as np
import pytest

import tfcompress.quantization as tq
from tfcompress.quantization.outlier_channels import find_outlier_channels, select_channels

_OUTLIERS = [5, 30]


def _model_with_outliers():
    """Dense(48) on (16, 32) inputs whose channels 5 and 30 are ~40x larger.

    Its output is the model's, so it is quantized (a Dense read only by a
    LayerNormalization would output float and need no split).
    """
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 32))
    outputs = keras.layers.Dense(48, name="big")(inputs)
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


def _scaled_channels(factors):
    return [int(c) for c in np.flatnonzero(np.asarray(factors) > 1.0)]


def test_finds_the_planted_channels_and_leaves_the_model_as_it_was():
    model = _model_with_outliers()
    before = model.predict(_data(8), verbose=0)
    found = find_outlier_channels(model, _data())
    assert list(found) == ["big"] and list(found["big"]) == ["output_scale"]
    factors = found["big"]["output_scale"]
    assert _scaled_channels(factors) == _OUTLIERS
    # Each outlier channel is divided down to the range of the largest ordinary one.
    outputs = model.predict(_data(), verbose=0).reshape(-1, 48)
    span = np.maximum(outputs.max(0), 0) - np.minimum(outputs.min(0), 0)
    ordinary = np.delete(span, _OUTLIERS).max()
    np.testing.assert_allclose(factors[_OUTLIERS], span[_OUTLIERS] / ordinary, rtol=1e-3)
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
    assert _scaled_channels(
        found["transformer_layer_0/feedforward_output_dense"]["output_scale"]
    ) == [3]


def test_output_scales_and_splits_cut_the_error_of_outlier_channels():
    model = _model_with_outliers()
    x = _data()
    reference = model.predict(x, verbose=0)
    errors = {}
    for name, data, per_layer in (
        ("scaled", x, None),
        ("split", None, {"big": {"outlier_channels": _OUTLIERS}}),
        ("plain", None, None),
    ):
        qat = tq.quantize_model(model, representative_data=data, per_layer=per_layer)
        qat(x, training=True)  # sets the activation ranges
        errors[name] = np.abs(qat.predict(x, verbose=0) - reference).mean()
    assert errors["scaled"] < errors["plain"] / 3, errors
    assert errors["split"] < errors["plain"] / 3, errors


def test_per_layer_outlier_channels_win_over_the_found_scales():
    model = _model_with_outliers()
    qat = tq.quantize_model(
        model, per_layer={"big": {"outlier_channels": [5]}}, representative_data=_data()
    )
    assert qat.get_layer("quant_big").outlier_channels == (5,)
    assert qat.get_layer("quant_big").output_scale is None


def test_scaled_model_converts_to_int8_with_one_float_mul_and_reloads(tmp_path):
    from tfcompress.saving import load_model

    x = _data()
    qat = tq.quantize_model(_model_with_outliers(), representative_data=x)
    qat(x, training=True)
    path = tmp_path / "scaled.keras"
    qat.save(path)
    reloaded = load_model(path)
    np.testing.assert_array_equal(
        reloaded.get_layer("quant_big").output_scale.numpy(),
        qat.get_layer("quant_big").output_scale.numpy(),
    )
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), qat.predict(x, verbose=0))
    kinds = _int8_export_op_kinds(qat, x, ("CONV_2D", "PAD", "MUL"))
    assert kinds == {("CONV_2D", "int8"): 1, ("MUL", "float32"): 1}, kinds


def test_split_model_converts_to_int8_and_matches_keras(tmp_path):
    from tfcompress.saving import load_model

    x = _data()
    qat = tq.quantize_model(
        _model_with_outliers(), per_layer={"big": {"outlier_channels": _OUTLIERS}}
    )
    qat(x, training=True)
    path = tmp_path / "split.keras"
    qat.save(path)
    reloaded = load_model(path)
    assert reloaded.get_layer("quant_big").outlier_channels == tuple(_OUTLIERS)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), qat.predict(x, verbose=0))
    kinds = _int8_export_op_kinds(qat, x, ("CONV_2D", "PAD", "GATHER"))
    # One int8 PAD per outlier channel puts it back in place (no GATHER: XNNPack does not take it).
    assert kinds == {("CONV_2D", "int8"): 2, ("PAD", "int8"): 2}, kinds


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
    with pytest.raises(TypeError, match="`representative_data` must be a numpy array"):
        find_outlier_channels(_model_with_outliers(), 3)
    with pytest.raises(ValueError, match="produced no batches"):
        find_outlier_channels(_model_with_outliers(), iter([]))


def test_a_dense_after_scaled_outputs_quantizes_its_float_input():
    """Output scales multiply in float; a Dense reading the product must
    quantize its input, or it would convert to a float FULLY_CONNECTED."""
    model = _model_with_outliers()
    inputs = keras.Input((16, 32))
    hidden = model.get_layer("big")(inputs)
    outputs = keras.layers.Dense(4, name="head")(hidden)
    model = keras.Model(inputs, outputs)
    scaled = tq.quantize_model(model, representative_data=_data())
    assert _scaled_channels(scaled.get_layer("quant_big").output_scale.numpy()) == _OUTLIERS
    assert scaled.get_layer("quant_head").input_quantizer is not None
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
    # up's own output unit 7 also gets its own scale (GELU then runs on the float product).
    assert found["up"]["quantize_output"] is False and _scaled_channels(
        found["up"]["output_scale"]
    ) == [7]
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
    kinds = _int8_export_op_kinds(split, x, ("CONV_2D", "GELU"))
    # up (its unit 7 scaled), down's ordinary channels and outlier rows: all int8; GELU float.
    assert kinds == {("CONV_2D", "int8"): 3, ("GELU", "float32"): 1}, kinds


def test_gelu_matmul_output_outliers_get_their_own_scale():
    """The FFN's first matmul: unit 7 sets the range of its int8 output
    unless computed apart; GELU then runs in float on the sum."""
    model = _ffn_with_input_outliers()
    x = _data()
    inputs = keras.Input((16, 32))
    model = keras.Model(inputs, model.get_layer("up")(inputs))
    reference = model.predict(x, verbose=0)
    errors = {}
    scale = np.ones(64, "float32")
    scale[7] = 30.0
    for name, override in (
        ("split", {"outlier_channels": [7]}),
        ("scaled", {"output_scale": scale}),
        ("plain", {}),
    ):
        # GELU's output left float (a consumer's input split would take it).
        qat = tq.quantize_model(model, per_layer={"up": {**override, "quantize_output": False}})
        qat(x, training=True)
        errors[name] = np.abs(qat.predict(x, verbose=0) - reference).mean()
    assert errors["split"] < errors["plain"] / 3, errors
    assert errors["scaled"] < errors["plain"] / 3, errors
    up = qat.get_layer("quant_up")
    # GELU is flat below -4: the matmul's int8 range spends no levels there.
    assert float(up.plan.pre_activation.variables["min_var"].numpy()) == pytest.approx(-4.0)
    split = tq.quantize_model(model, per_layer={"up": {"outlier_channels": [7]}})
    split(x, training=True)
    kinds = _int8_export_op_kinds(split, x, ("CONV_2D", "GELU", "PAD"))
    assert kinds == {("CONV_2D", "int8"): 2, ("GELU", "float32"): 1, ("PAD", "int8"): 1}, kinds


def test_gelu_without_outliers_runs_float_before_an_int8_matmul():
    """XNNPack runs float GELU but not int8 GELU: the next matmul quantizes
    its input instead of the GELU output being int8."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 32))
    hidden = keras.layers.Dense(64, activation="gelu", name="up")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(32, name="down")(hidden))
    x = _data()
    found = find_outlier_channels(model, x)
    assert found == {"up": {"quantize_output": False}, "down": {"quantize_input": True}}
    qat = tq.quantize_model(model, representative_data=x)
    qat(x, training=True)
    down = qat.get_layer("quant_down")
    assert down.input_quantizer is not None and down.isolate_input
    kinds = _int8_export_op_kinds(qat, x, ("CONV_2D", "GELU"))
    assert kinds == {("CONV_2D", "int8"): 2, ("GELU", "float32"): 1}, kinds


def _norm_then_dense():
    """LayerNormalization -> Dense(24): the norm's channels 3 and 20 are ~40x."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((16, 32))
    hidden = keras.layers.LayerNormalization(name="norm")(inputs)
    outputs = keras.layers.Dense(24, name="proj")(hidden)
    model = keras.Model(inputs, outputs)
    gamma = np.ones(32, "float32")
    gamma[[3, 20]] = 40.0
    model.get_layer("norm").gamma.assign(gamma)
    return model


def test_layer_norm_outputs_stay_float_and_their_readers_smooth():
    model = _norm_then_dense()
    x = _data()
    found = find_outlier_channels(model, x)
    assert set(found) == {"norm", "proj"}
    assert found["norm"] == {"quantize_output": False}
    factors = found["proj"]["input_scale"]
    assert factors.shape == (32,) and np.median(factors) == pytest.approx(1.0)
    assert set(np.argsort(factors)[-2:]) == {3, 20}  # the large channels are divided most
    assert "input_scale" not in find_outlier_channels(model, x, smoothing=None).get("proj", {})
    reference = model.predict(x, verbose=0)
    errors = {}
    for name, smoothing in (("smoothed", 0.5), ("plain", None)):
        qat = tq.quantize_model(model, representative_data=x, smoothing=smoothing)
        qat(x, training=True)
        errors[name] = np.abs(qat.predict(x, verbose=0) - reference).mean()
    assert errors["smoothed"] < errors["plain"] / 1.5, errors  # measured 0.155 vs 0.272
    smoothed = tq.quantize_model(model, representative_data=x)
    smoothed(x, training=True)
    assert smoothed.get_layer("quant_proj").input_quantizer is not None
    assert not smoothed.get_layer("quant_norm").quantize_config.quantize_output
    kinds = _int8_export_op_kinds(smoothed, x, ("CONV_2D", "MUL", "QUANTIZE"))
    # The smoothing factors: one float MUL before the QUANTIZE of proj's input.
    assert kinds[("CONV_2D", "int8")] == 1 and kinds[("MUL", "float32")] >= 1, kinds


def test_a_layer_norm_read_by_another_layer_stays_quantized():
    inputs = keras.Input((16, 32))
    hidden = keras.layers.LayerNormalization(name="norm")(inputs)
    projected = keras.layers.Dense(32, name="proj")(hidden)
    outputs = keras.layers.Add(name="add")([hidden, projected])
    model = keras.Model(inputs, outputs)
    found = find_outlier_channels(model, _data())
    assert "norm" not in found and "input_scale" not in found.get("proj", {})


def _sublayer(model, path):
    from tfcompress.core.layer_tree import walk_layers

    (layer,) = [ref.layer for ref in walk_layers(model) if ref.path == path]
    return layer


def test_smoothing_inside_keras_hub_bert_converts_to_int8(tmp_path):
    from tfcompress.saving import load_model

    import testing

    keras.utils.set_random_seed(0)
    backbone = testing.bert_backbone(num_layers=2)
    for variable in backbone.weights:
        if variable.path.endswith("bias"):
            variable.assign(np.full(variable.shape, 0.1, "float32"))
    data = testing.token_inputs(batch=16)
    found = find_outlier_channels(backbone, data)
    norms = sorted(
        path
        for path, entry in found.items()
        if entry == {"quantize_output": False} and "norm" in path
    )
    assert norms == [
        "embeddings_layer_norm",
        "transformer_layer_0/feedforward_layer_norm",
        "transformer_layer_0/self_attention_layer_norm",
        "transformer_layer_1/self_attention_layer_norm",
    ]  # the last block's output norm is read by no matmul
    for i in range(2):  # GELU left float, the next matmul quantizes its input
        assert (
            found[f"transformer_layer_{i}/feedforward_intermediate_dense"]["quantize_output"]
            is False
        )
        assert found[f"transformer_layer_{i}/feedforward_output_dense"] == {"quantize_input": True}
    smoothed = sorted(path for path, entry in found.items() if "input_scale" in entry)
    assert smoothed == sorted(
        f"transformer_layer_{i}/{name}"
        for i in range(2)
        for name in (
            "self_attention_layer/query",
            "self_attention_layer/key",
            "self_attention_layer/value",
            "feedforward_intermediate_dense",
        )
    )
    for i in range(
        2
    ):  # one set of factors for the three readers of a norm: one MUL + QUANTIZE in TFLite
        query, key, value = (
            found[f"transformer_layer_{i}/self_attention_layer/{n}"]["input_scale"]
            for n in ("query", "key", "value")
        )
        np.testing.assert_array_equal(query, key)
        np.testing.assert_array_equal(query, value)
    qat = tq.quantize_model(backbone, representative_data=data)
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input((testing.SEQ,), dtype="int32", name=n) for n in names]
    model = keras.Model(inputs, qat(dict(zip(names, inputs)))["sequence_output"])
    x = [data[name] for name in names]
    model(x, training=True)
    qat.save(tmp_path / "bert.keras")
    reloaded = load_model(tmp_path / "bert.keras")
    for path in smoothed:
        parent, name = path.rsplit("/", 1)
        np.testing.assert_array_equal(
            _sublayer(reloaded, f"{parent}/quant_{name}").input_scale.numpy(),
            _sublayer(qat, f"{parent}/quant_{name}").input_scale.numpy(),
        )
    np.testing.assert_array_equal(
        reloaded.predict(data, verbose=0)["sequence_output"],
        qat.predict(data, verbose=0)["sequence_output"],
    )
    kinds = _int8_export_op_kinds(model, x, ("CONV_2D", "BATCH_MATMUL", "GELU", "QUANTIZE"))
    # Per block: one QUANTIZE for Q/K/V together, one each for the attention
    # output, FFN and FFN output projection inputs; one for the last norm's output.
    assert kinds == {
        ("CONV_2D", "int8"): 12,
        ("BATCH_MATMUL", "float32"): 4,
        ("GELU", "float32"): 2,
        ("QUANTIZE", "float32"): 9,
    }, kinds
