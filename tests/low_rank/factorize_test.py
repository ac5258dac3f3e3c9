import keras
import numpy as np
import pytest

import tfcompress
from tfcompress.low_rank import LowRankDense, LowRankEinsumDense, factorize, low_rank_report

import testing


def _mlp(seed=0, width=64):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32,))
    hidden = keras.layers.Dense(width, activation="relu", name="up")(inputs)
    return keras.Model(inputs, keras.layers.Dense(32, name="down")(hidden))


def _correlated(rows=512, size=32, seed=0):
    """Inputs living mostly in 4 directions, as transformer activations do."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(4, size)) * 5
    return (rng.normal(size=(rows, 4)) @ basis + 0.1 * rng.normal(size=(rows, size))).astype(
        "float32"
    )


def _relative_error(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return np.linalg.norm(a - b) / np.linalg.norm(a)


def test_svd_weight_error_is_the_discarded_spectrum():
    model = _mlp()
    small = factorize(model, rank=8)
    for name in ("up", "down"):
        kernel = model.get_layer(name).kernel.numpy().astype("float64")
        s = np.linalg.svd(kernel, compute_uv=False)
        layer = small.get_layer(name)
        product = layer.first.kernel.numpy() @ layer.second.kernel.numpy()
        measured = np.linalg.norm(kernel - product) / np.linalg.norm(kernel)
        np.testing.assert_allclose(measured**2, (s[8:] ** 2).sum() / (s**2).sum(), rtol=1e-4)
        np.testing.assert_allclose(layer.weight_error, measured, rtol=1e-4)


def test_whitened_and_activation_aware_beat_svd_on_correlated_inputs():
    model = _mlp()
    x = _correlated()
    reference = model(x)
    errors = {
        method: _relative_error(
            reference,
            factorize(
                model, rank=8, method=method, representative_data=None if method == "svd" else x
            )(x),
        )
        for method in ("svd", "activation_aware", "whitened")
    }
    assert errors["whitened"] < 0.5 * errors["svd"], errors
    assert errors["activation_aware"] < errors["svd"], errors


def test_whitened_output_error_is_measured_on_the_data():
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(48, use_bias=False, name="only")]
    )
    x = _correlated()
    small = factorize(model, rank=8, method="whitened", representative_data=x)
    np.testing.assert_allclose(
        small.get_layer("only").output_error, _relative_error(model(x), small(x)), rtol=1e-3
    )


@pytest.mark.parametrize("method", ["svd", "whitened"])
def test_compression_target_met_within_one_rounding_step(method):
    model = _mlp(width=96)
    x = _correlated()
    small = factorize(model, compression=0.6, method=method, representative_data=x, round_to=8)
    report = low_rank_report(small)
    total = sum(
        np.prod(model.get_layer(n).kernel.shape) + model.get_layer(n).bias.shape[0]
        for n in ("up", "down")
    )
    dense_left = sum(
        np.prod(model.get_layer(n).kernel.shape) + model.get_layer(n).bias.shape[0]
        for n in ("up", "down")
        if not isinstance(small.get_layer(n), LowRankDense)
    )
    kept = report.params_after + dense_left
    step = 8 * (32 + 96)
    assert 0.6 * total - step < kept <= 0.6 * total


def test_compression_picks_ranks_where_error_is_lowest():
    """A layer fed 4-dimensional inputs loses nothing at low rank under whitening."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,))
    a = keras.layers.Dense(32, name="low_rank_inputs")(inputs)
    b = keras.layers.Dense(32, name="full_rank_inputs")(keras.layers.GaussianNoise(0.0)(inputs))
    model = keras.Model(inputs, [a, b])
    x = _correlated()
    small = factorize(
        model,
        compression=0.5,
        method="whitened",
        representative_data=x,
        layers=["low_rank_inputs"],
        round_to=4,
    )
    assert small.get_layer("low_rank_inputs").rank <= 8
    assert small.get_layer("low_rank_inputs").output_error < 0.01


def test_compression_spreads_the_cut_over_layers():
    """Whitening makes the layer fed 4-dimensional inputs nearly free to cut (the
    plain greedy takes it to rank 4); it still keeps its share of the budget."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((128,))
    hidden = keras.layers.Dense(128, activation="relu", name="a")(inputs)
    hidden = keras.layers.Dense(128, activation="relu", name="b")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(128, name="c")(hidden))
    x = _correlated(size=128)
    small = factorize(model, compression=0.5, method="whitened", representative_data=x, round_to=4)
    rows = {row["path"]: row for row in low_rank_report(small).rows}
    assert set(rows) == {"a", "b", "c"}
    step = 4 * 256
    for row in rows.values():
        assert row["params_after"] > 0.75 * 0.5 * row["params_before"] - step, rows
    assert rows["a"]["rank"] == min(row["rank"] for row in rows.values())
    total = 3 * (128 * 128 + 128)
    assert 0.5 * total - step < sum(row["params_after"] for row in rows.values()) <= 0.5 * total


def test_energy_rounds_up_and_keeps_dense_when_not_smaller():
    model = _mlp()
    small = factorize(model, energy=0.5, round_to=8)
    ranks = {r["path"]: r["rank"] for r in low_rank_report(small).rows}
    assert ranks and all(rank % 8 == 0 for rank in ranks.values())
    kernel = model.get_layer("up").kernel.numpy().astype("float64")
    s2 = np.linalg.svd(kernel, compute_uv=False) ** 2
    needed = int(np.searchsorted(np.cumsum(s2) / s2.sum(), 0.5) + 1)
    assert ranks["up"] == -(-needed // 8) * 8


def test_bert_backbone_keeps_class_and_round_trips(tmp_path):
    backbone = testing.bert_backbone(num_layers=2)
    data = testing.token_inputs(batch=8)
    small = factorize(backbone, rank=2, method="whitened", representative_data=data, round_to=1)
    testing.assert_keeps_class(small, backbone)
    paths = {row["path"]: row["class"] for row in low_rank_report(small).rows}
    for projection in ("query", "key", "value", "attention_output"):
        assert (
            paths[f"transformer_layer_1/self_attention_layer/{projection}"] == "LowRankEinsumDense"
        )
    assert paths["transformer_layer_0/feedforward_intermediate_dense"] == "LowRankDense"
    assert not isinstance(
        backbone.transformer_layers[0]._self_attention_layer._query_dense, LowRankEinsumDense
    )
    restored = testing.run_model_saving_test(
        small, data, tmp_path, loader=tfcompress.saving.load_model
    )
    assert len(low_rank_report(restored).rows) == len(paths)


def test_pruned_factorized_backbone_round_trips(tmp_path):
    backbone = testing.bert_backbone(num_layers=1)
    data = testing.token_inputs(batch=8)
    small = factorize(backbone, rank=2, round_to=1)
    pruned = tfcompress.sparsity.prune_low_magnitude(
        small, pruning_schedule=tfcompress.sparsity.ConstantSparsity(0.5, 0)
    )
    pruned(data)
    restored = testing.run_model_saving_test(
        pruned, data, tmp_path, loader=tfcompress.saving.load_model
    )
    assert len(low_rank_report(restored).rows) == len(low_rank_report(small).rows)


def test_subclassed_model_in_place():
    model = testing.subclassed()
    x = testing.inputs_for(model)
    small = factorize(model, rank=1, round_to=1, inplace=True)
    assert small is model
    assert low_rank_report(model).rows
    assert np.asarray(model(x)).shape == np.asarray(testing.subclassed()(x)).shape


def test_layers_by_name_and_callable():
    model = _mlp()
    by_name = factorize(model, rank=8, layers=["down"])
    assert [r["path"] for r in low_rank_report(by_name).rows] == ["down"]
    by_fn = factorize(model, rank=8, layers=lambda path, layer: layer.units == 64)
    assert [r["path"] for r in low_rank_report(by_fn).rows] == ["up"]


def test_prune_and_qat_compose_and_convert():
    model = _mlp()
    x = _correlated(64)
    small = factorize(model, rank=8, method="whitened", representative_data=x)
    pruned = tfcompress.sparsity.prune_low_magnitude(
        small, pruning_schedule=tfcompress.sparsity.ConstantSparsity(0.5, 0)
    )
    wrapped = [
        f"{ref.parent.name}/{ref.layer.layer.name}"
        for ref in tfcompress.core.walk_layers(pruned)
        if isinstance(ref.layer, tfcompress.sparsity.PruneLowMagnitude)
    ]
    assert wrapped == ["up/first", "up/second", "down/first", "down/second"]
    qat = tfcompress.quantization.quantize_model(small)
    quantized = [
        f"{ref.parent.name}/{ref.layer.layer.name}"
        for ref in tfcompress.core.walk_layers(qat)
        if isinstance(ref.layer, tfcompress.quantization.QuantizeWrapper)
    ]
    assert quantized == ["up/first", "up/second", "down/first", "down/second"]
    result = tfcompress.export.to_tflite(qat, target="int8", sample=x[:8])
    assert result.checks["outputs_match"]["passed"]
    assert result.ops.count("FULLY_CONNECTED") == 4


def test_to_tflite_runs_two_fully_connected_per_factorized_layer():
    backbone = testing.bert_backbone(num_layers=1)
    data = testing.token_inputs()
    small = factorize(backbone, rank=2, round_to=1)
    dense_ops = tfcompress.export.to_tflite(backbone, sample=data).ops
    result = tfcompress.export.to_tflite(small, sample=data)
    assert result.checks["outputs_match"]["passed"]
    factorized = len(low_rank_report(small).rows)
    assert result.ops.count("FULLY_CONNECTED") == dense_ops.count("FULLY_CONNECTED") + factorized


def test_distillation_fine_tune_lowers_the_error():
    model = _mlp()
    x = _correlated(1024)
    teacher = np.asarray(model(x))
    small = factorize(model, rank=4)
    before = _relative_error(teacher, small(x))
    small.compile(keras.optimizers.Adam(1e-2), "mse")
    small.fit(x, teacher, epochs=20, batch_size=64, verbose=0)
    assert _relative_error(teacher, small(x)) < 0.5 * before


def test_latency_gate_keeps_layers_the_measurement_says_are_not_faster():
    from tfcompress.low_rank import _latency_gate

    inputs = keras.Input((64, 512))
    hidden = keras.layers.Dense(512, name="big")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(64, name="small")(hidden))
    gated = factorize(model, rank=8, latency_gate=1)
    # 64 rows: 16.8M multiply-adds dense against 0.5M factorized.
    assert isinstance(gated.get_layer("big"), LowRankDense)
    faster = _latency_gate._CACHE[(64, 512, 64, 8, 1)][0]
    assert isinstance(gated.get_layer("small"), LowRankDense) == faster


def test_a_compiled_model_comes_back_ready_to_fit():
    model = _mlp()
    model.compile(keras.optimizers.SGD(0.01), "mse")
    x = _correlated(rows=64)
    model.fit(x, x, epochs=1, verbose=0)
    small = factorize(model, rank=8)
    # The original's optimizer was built for the dense kernels.
    history = small.fit(x, x, epochs=2, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert isinstance(small.optimizer, keras.optimizers.SGD)
    assert float(small.optimizer.learning_rate) == pytest.approx(0.01)


def test_original_model_is_untouched():
    model = _mlp()
    factorize(model, rank=8)
    assert type(model.get_layer("up")) is keras.layers.Dense


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"rank": 40, "layers": ["down"]},
            r"`rank=40` is larger than these layers allow .*'down': 32",
        ),
        ({"rank": 1000}, r"`rank=1000` is larger than these layers allow"),
        ({"energy": 0.0}, r"`energy` must be in \(0, 1\] .* Received: energy=0.0"),
        ({"energy": 1.5}, r"`energy` must be in \(0, 1\]"),
        ({"energy": True}, r"`energy` must be in \(0, 1\] .* Received: energy=True"),
        ({"compression": 1.0}, r"`compression` must be in \(0, 1\) .* Received: compression=1.0"),
        ({"compression": 0.0}, r"`compression` must be in \(0, 1\)"),
        ({"compression": 0.05}, r"`compression=0.05` keeps fewer parameters than rank 8"),
        ({"rank": 4, "method": "whitened"}, r"`method='whitened'` .* needs `representative_data`"),
        ({"rank": 4, "method": "activation_aware"}, r"needs `representative_data`"),
        ({"rank": 4, "method": "fisher"}, r"`method` must be one of"),
        ({}, r"Pass exactly one of `rank`, `energy` or `compression`"),
        ({"rank": 4, "energy": 0.5}, r"Pass exactly one of"),
        ({"rank": 4, "layers": ["nope"]}, r"`layers` names 'nope', which is no Dense/EinsumDense"),
        ({"energy": 1.0}, r"No layer of .* gets smaller at energy=1.0"),
        ({"rank": 4, "round_to": 0}, r"`round_to` must be an int >= 1"),
    ],
)
def test_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        factorize(_mlp(), **kwargs)


def test_nothing_to_factorize():
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"Nothing to factorize in .*no Dense or EinsumDense"):
        factorize(model, rank=1)


def test_rejects_tf_keras_like_inputs():
    with pytest.raises(TypeError, match=r"`model` must be a `keras.Model`"):
        factorize("model", rank=1)
