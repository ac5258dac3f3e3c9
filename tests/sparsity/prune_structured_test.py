import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress.cli.digits import load_digits
from tfcompress.sparsity import prune_structured


def _bert(num_heads=4, num_layers=2):
    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(
        vocabulary_size=64,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
        dropout=0.0,
    )


def _tokens(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, 12), "int32")
    mask[:, 9:] = 0
    return {
        "token_ids": rng.integers(1, 64, (batch, 12)).astype("int32"),
        "segment_ids": np.zeros((batch, 12), "int32"),
        "padding_mask": mask,
    }


def _weight(model, path):
    return next(w for w in model.weights if w.path == path)


def _removed(report, kind, path, size):
    kept = report.kept(kind, path)
    return [] if kept is None else sorted(set(range(size)) - set(kept))


def _mask_bert(model, report, num_layers, attention="self_attention_layer"):
    """The original with removed heads and FFN channels zeroed (their output rows)."""
    masked = tfcompress.core.copy_model(model)
    for i in range(num_layers):
        block = f"transformer_layer_{i}"
        out = _weight(masked, f"{block}/{attention}/attention_output/kernel")
        value = out.numpy()
        value[_removed(report, "heads", block, out.shape[0])] = 0
        out.assign(value)
        ffn = _weight(masked, f"{block}/feedforward_output_dense/kernel")
        value = ffn.numpy()
        value[_removed(report, "ffn", block, ffn.shape[0])] = 0
        ffn.assign(value)
    return masked


@pytest.mark.parametrize("criterion", ["magnitude", "taylor", "obd", "fisher", "random"])
def test_bert_heads_and_ffn_match_the_masked_original(criterion):
    model = _bert()
    data = [_tokens(seed=s) for s in range(2)]
    pruned, report = prune_structured(
        model,
        heads=0.5,
        ffn=0.5,
        criterion=criterion,
        representative_data=data,
        return_report=True,
    )
    assert (
        isinstance(pruned, keras_hub.models.BertBackbone)
        and type(pruned).__name__ == "BertBackbone"
    )
    attention = pruned.get_layer("transformer_layer_0")._self_attention_layer
    assert attention.num_heads == 2 and attention.key_dim == 4
    assert _weight(pruned, "transformer_layer_1/self_attention_layer/query/kernel").shape == (
        16,
        2,
        4,
    )
    assert _weight(pruned, "transformer_layer_1/feedforward_intermediate_dense/kernel").shape == (
        16,
        16,
    )
    assert pruned.count_params() < model.count_params()
    assert report.params_after == pruned.count_params()
    assert report.flops_after < report.flops_before
    masked = _mask_bert(model, report, 2)
    x = _tokens(batch=3, seed=9)
    expected = masked(x)["sequence_output"]
    np.testing.assert_allclose(pruned(x)["sequence_output"], expected, atol=1e-5)
    # The input model is untouched.
    assert _weight(model, "transformer_layer_0/self_attention_layer/query/kernel").shape == (
        16,
        4,
        4,
    )


def test_gpt2_heads_and_ffn_match_the_masked_original():
    keras.utils.set_random_seed(0)
    model = keras_hub.models.GPT2Backbone(
        vocabulary_size=64,
        num_layers=2,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=12,
        dropout=0.0,
    )
    data = [
        {"token_ids": t["token_ids"], "padding_mask": t["padding_mask"]} for t in (_tokens(seed=1),)
    ]
    pruned, report = prune_structured(
        model, heads=0.5, ffn=0.5, criterion="obd", representative_data=data, return_report=True
    )
    assert isinstance(pruned, keras_hub.models.GPT2Backbone)
    assert _weight(pruned, "transformer_layer_0/self_attention/key/kernel").shape == (16, 2, 4)
    masked = _mask_bert(model, report, 2, attention="self_attention")
    np.testing.assert_allclose(pruned(data[0]), masked(data[0]), atol=1e-5)


def test_taylor_keeps_the_units_with_largest_first_order_effect():
    model = _bert(num_layers=1)
    data = [_tokens(seed=1)]
    _, report = prune_structured(
        model,
        ffn=0.5,
        criterion="taylor",
        representative_data=data,
        round_to=1,
        return_report=True,
    )
    weights = [
        _weight(model, "transformer_layer_0/feedforward_intermediate_dense/kernel"),
        _weight(model, "transformer_layer_0/feedforward_intermediate_dense/bias"),
        _weight(model, "transformer_layer_0/feedforward_output_dense/kernel"),
    ]
    with tf.GradientTape() as tape:
        outputs = model(data[0])
        loss = sum(0.5 * tf.reduce_mean(tf.square(o)) for o in outputs.values())
    grads = tape.gradient(loss, [w.value for w in weights])
    kernel, bias, out = (w.numpy() * g.numpy() for w, g in zip(weights, grads))
    score = np.abs(kernel.sum(axis=0) + bias + out.sum(axis=1))
    assert report.kept("ffn", "transformer_layer_0") == sorted(np.argsort(-score)[:16].tolist())


def test_criteria_choose_differently():
    model = _bert(num_layers=1)
    data = [_tokens(seed=1)]
    kept = {
        c: prune_structured(
            model, ffn=0.5, criterion=c, representative_data=data, return_report=True
        )[1].kept("ffn", "transformer_layer_0")
        for c in ("magnitude", "taylor", "random")
    }
    assert len({tuple(v) for v in kept.values()}) == 3


def test_per_layer_paths_and_global_budget_give_non_uniform_widths():
    model = _bert(num_heads=4, num_layers=2)
    pruned = prune_structured(
        model,
        heads={"transformer_layer_1": 0.75},
        ffn={"transformer_layer_0": 0.25},
        criterion="magnitude",
        round_to=1,
    )
    assert pruned.get_layer("transformer_layer_0")._self_attention_layer.num_heads == 4
    assert pruned.get_layer("transformer_layer_1")._self_attention_layer.num_heads == 1
    assert _weight(pruned, "transformer_layer_0/feedforward_output_dense/kernel").shape == (24, 16)
    assert _weight(pruned, "transformer_layer_1/feedforward_output_dense/kernel").shape == (32, 16)
    _, report = prune_structured(
        model, heads={"global": 0.75}, criterion="magnitude", return_report=True
    )
    after = [row["after"] for row in report.rows]
    assert sum(after) == 2 and min(after) >= 1


def test_every_layer_keeps_at_least_one_head():
    model = _bert(num_heads=2, num_layers=2)
    _, report = prune_structured(
        model, heads={"global": 0.9}, criterion="magnitude", return_report=True
    )
    assert [row["after"] for row in report.rows] == [1, 1]


def test_round_to_rounds_kept_channels():
    model = _bert(num_layers=1)
    pruned = prune_structured(model, ffn=0.3, criterion="magnitude", round_to=8)
    assert _weight(pruned, "transformer_layer_0/feedforward_output_dense/kernel").shape[0] == 24
    pruned = prune_structured(model, ffn=0.3, criterion="magnitude", round_to=1)
    assert _weight(pruned, "transformer_layer_0/feedforward_output_dense/kernel").shape[0] == 22


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"heads": 1.0}, r"`heads` must be a fraction in \[0, 1\).*heads=1.0"),
        ({"ffn": -0.1}, r"`ffn` must be a fraction"),
        ({"heads": {"global": 1.5}}, r"heads\['global'\]"),
        (
            {"heads": {"transformer_layer_7": 0.5}},
            r"names 'transformer_layer_7'.*transformer_layer_0",
        ),
        ({"heads": 0.01}, r"removes nothing from 'transformer_layer_0'"),
        ({"heads": 0.5, "criterion": "taylor"}, r"needs `representative_data`"),
        ({"heads": 0.5, "criterion": "l1"}, r"`criterion` must be one of"),
        ({"heads": 0.5, "round_to": 0}, r"`round_to` must be a positive integer"),
        ({}, r"Nothing to prune"),
    ],
)
def test_bad_input_is_refused_before_any_work(kwargs, match):
    model = _bert(num_layers=1)
    before = [w.numpy().copy() for w in model.weights]
    kwargs.setdefault("criterion", "magnitude")
    with pytest.raises(ValueError, match=match):
        prune_structured(model, inplace=True, **kwargs)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_heads_on_a_cnn_is_refused():
    model = _functional_cnn()
    with pytest.raises(
        ValueError, match=r"`heads=0.5` was given, but the model has nothing of that kind"
    ):
        prune_structured(model, heads=0.5, criterion="magnitude")


def test_a_layer_with_a_single_head_has_nothing_to_remove():
    model = _bert(num_heads=1, num_layers=1)
    with pytest.raises(ValueError, match=r"'transformer_layer_0' has a single unit of `heads`"):
        prune_structured(model, heads=0.5, criterion="magnitude")


def _digits():
    x, y, _, _ = load_digits(test_fraction=0)
    return x, y


def _cnn_layers():
    return {
        "a": keras.layers.Conv2D(8, 3, padding="same", name="a"),
        "a_bn": keras.layers.BatchNormalization(name="a_bn"),
        "b": keras.layers.Conv2D(16, 3, padding="same", name="b"),
        "b_bn": keras.layers.BatchNormalization(name="b_bn"),
        "skip": keras.layers.Conv2D(16, 1, name="skip"),
        "dw": keras.layers.DepthwiseConv2D(3, padding="same", name="dw"),
        "c": keras.layers.Conv2D(16, 3, strides=2, name="c"),
        "hidden": keras.layers.Dense(24, activation="relu", name="hidden"),
        "head": keras.layers.Dense(10, name="head"),
    }


def _functional_cnn():
    L = _cnn_layers()
    inputs = keras.Input((8, 8, 1))
    a = keras.layers.ReLU()(L["a_bn"](L["a"](inputs)))
    s = keras.layers.ReLU()(keras.layers.Add()([L["b_bn"](L["b"](a)), L["skip"](a)]))
    h = L["hidden"](keras.layers.Flatten()(L["c"](L["dw"](s))))
    return keras.Model(inputs, L["head"](h))


class ResidualCNN(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name, layer in _cnn_layers().items():
            setattr(self, name, layer)
        self.relu = keras.layers.ReLU()
        self.relu2 = keras.layers.ReLU()
        self.add = keras.layers.Add()
        self.flatten = keras.layers.Flatten()

    def call(self, x, training=False):
        a = self.relu(self.a_bn(self.a(x), training=training))
        s = self.relu2(self.add([self.b_bn(self.b(a), training=training), self.skip(a)]))
        return self.head(self.hidden(self.flatten(self.c(self.dw(s)))))


def _trained_bn(model, x):
    """Non-trivial BatchNorm statistics, as a trained model has."""
    rng = np.random.default_rng(3)
    for ref in tfcompress.core.walk_layers(model):
        if isinstance(ref.layer, keras.layers.BatchNormalization):
            ref.layer.set_weights(
                [rng.random(w.shape).astype("float32") + 0.5 for w in ref.layer.weights]
            )


def _mask_readers(model, report):
    """The original with every removed filter's readers' input rows zeroed."""
    masked = tfcompress.core.copy_model(model)
    layer = {ref.layer.name: ref.layer for ref in tfcompress.core.walk_layers(masked)}
    readers = {
        "a": [("b", None), ("skip", None)],
        "b": [("c", None)],
        "hidden": [("head", None)],
        "c": [("hidden", 16)],
    }
    for producer, reads in readers.items():
        removed = _removed(report, "filters", producer, layer[producer].kernel.shape[-1])
        for name, channels in reads:
            kernel = layer[name].kernel.numpy()
            if channels is None:
                kernel[..., removed, :] = 0
            else:  # Dense after Flatten of a (3, 3, 16) map: row = position * 16 + channel
                rows = [p * channels + c for p in range(9) for c in removed]
                kernel[rows] = 0
            layer[name].kernel.assign(kernel)
    return masked


@pytest.mark.parametrize(
    "build", [_functional_cnn, lambda: ResidualCNN()], ids=["functional", "subclassed"]
)
def test_cnn_filters_match_the_masked_original(build):
    x, _ = _digits()
    keras.utils.set_random_seed(0)
    model = build()
    model(x[:2])
    _trained_bn(model, x)
    pruned, report = prune_structured(
        model,
        filters=0.5,
        criterion="magnitude",
        representative_data=x[:64],
        round_to=1,
        return_report=True,
    )
    assert isinstance(pruned, type(model)) and type(pruned).__name__ == type(model).__name__
    assert {row["path"].rsplit("/", 1)[-1] for row in report.rows} == {"a", "b", "c", "hidden"}
    sizes = {
        ref.layer.name: ref.layer.kernel.shape
        for ref in tfcompress.core.walk_layers(pruned)
        if hasattr(ref.layer, "kernel")
    }
    assert (
        sizes["a"] == (3, 3, 1, 4) and sizes["b"] == (3, 3, 4, 8) and sizes["skip"] == (1, 1, 4, 8)
    )
    assert (
        sizes["dw"] == (3, 3, 8, 1) and sizes["hidden"] == (9 * 8, 12) and sizes["head"] == (12, 10)
    )
    expected = _mask_readers(model, report)(x[:32])
    np.testing.assert_allclose(pruned(x[:32]), expected, atol=1e-4)


def test_sequential_mlp_and_cnn_keep_their_class():
    x, _ = _digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    pruned = prune_structured(model, filters=0.5, criterion="magnitude", representative_data=x[:16])
    assert type(pruned) is keras.Sequential
    assert [tuple(layer.kernel.shape) for layer in pruned.layers if hasattr(layer, "kernel")] == [
        (3, 3, 1, 8),
        (36 * 8, 16),
        (16, 10),
    ]
    assert pruned(x[:4]).shape == (4, 10)


def test_bert_with_non_uniform_widths_round_trips_through_keras_file(tmp_path):
    model = _bert()
    pruned = prune_structured(
        model,
        heads={"transformer_layer_0": 0.5, "transformer_layer_1": 0.75},
        ffn={"transformer_layer_0": 0.25},
        criterion="magnitude",
        round_to=1,
    )
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    assert isinstance(loaded, keras_hub.models.BertBackbone)
    assert [
        loaded.get_layer(f"transformer_layer_{i}")._self_attention_layer.num_heads for i in (0, 1)
    ] == [2, 1]
    assert loaded.get_layer("transformer_layer_0")._feedforward_intermediate_dense.units == 24
    x = _tokens(seed=5)
    np.testing.assert_array_equal(loaded(x)["sequence_output"], pruned(x)["sequence_output"])


@pytest.mark.parametrize(
    "build", [_functional_cnn, lambda: ResidualCNN()], ids=["functional", "subclassed"]
)
def test_pruned_cnn_round_trips_through_keras_file(build, tmp_path):
    x, _ = _digits()
    keras.utils.set_random_seed(0)
    model = build()
    model(x[:2])
    pruned = prune_structured(model, filters=0.5, criterion="magnitude", representative_data=x[:32])
    pruned.save(tmp_path / "cnn.keras")
    loaded = keras.saving.load_model(
        tmp_path / "cnn.keras", custom_objects={"ResidualCNN": ResidualCNN}
    )
    assert type(loaded).__name__ == type(model).__name__
    assert loaded.count_params() == pruned.count_params() < model.count_params()
    np.testing.assert_array_equal(loaded(x[:8]), pruned(x[:8]))


def test_exported_tflite_has_the_reduced_tensors():
    x, _ = _digits()
    keras.utils.set_random_seed(0)
    model = _functional_cnn()
    pruned = prune_structured(
        model, filters=0.5, criterion="magnitude", representative_data=x[:32], round_to=1
    )
    content = tfcompress.export.to_tflite(pruned, target="float32")
    content = content.tflite_bytes
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    shapes = {tuple(d["shape"]) for d in interpreter.get_tensor_details()}
    assert (4, 3, 3, 1) in shapes and (8, 3, 3, 4) in shapes  # conv "a", "b" in OHWI
    assert (12, 72) in shapes and (1, 3, 3, 8) in shapes and (8, 3, 3, 8) in shapes
    assert (8, 3, 3, 1) not in shapes and (24, 144) not in shapes and (1, 3, 3, 16) not in shapes
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    name = next(iter(interpreter.get_signature_list()["serving_default"]["inputs"]))
    out = next(iter(runner(**{name: x[:1]}).values()))
    np.testing.assert_allclose(out, pruned(x[:1]), atol=1e-4)


def test_taylor_on_a_compiled_cnn_uses_the_loss_of_labelled_batches_from_a_generator():
    x, y = _digits()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    batches = [(x[i : i + 64], y[i : i + 64]) for i in (0, 64, 128)]
    _, report = prune_structured(
        model,
        filters=0.5,
        criterion="taylor",
        representative_data=(b for b in batches),
        round_to=1,
        return_report=True,
    )
    kernel, bias = model.get_layer("conv").kernel, model.get_layer("conv").bias
    reader = model.get_layer("logits").kernel
    score = np.zeros(16)
    for bx, by in batches:
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=bx, y=by, y_pred=model(bx))
        gk, gb, gr = tape.gradient(loss, [kernel.value, bias.value, reader.value])
        rows = (reader.numpy() * gr.numpy()).reshape(36, 16, 10).sum(axis=(0, 2))
        score += np.abs(
            (kernel.numpy() * gk.numpy()).sum(axis=(0, 1, 2)) + bias.numpy() * gb.numpy() + rows
        )
    assert report.kept("filters", "conv") == sorted(np.argsort(-score)[:8].tolist())


def test_a_compiled_model_comes_back_ready_to_fit(tmp_path):
    x, y = _digits()
    model = ResidualCNN()
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x[:64], y[:64], batch_size=64, verbose=0)
    pruned = prune_structured(model, filters=0.5, criterion="magnitude")
    # The original's optimizer was built for the removed filters' variables.
    history = pruned.fit(x[:64], y[:64], batch_size=64, epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    assert pruned.optimizer is not model.optimizer
    assert float(pruned.optimizer.learning_rate) == pytest.approx(3e-3)
    assert int(model.optimizer.iterations) == 1  # the original keeps its state


def test_gradient_criteria_on_another_backend_say_what_to_use(monkeypatch):
    from tfcompress.sparsity import structured_scores

    model = _bert(num_layers=1)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(
        NotImplementedError, match=r"this process runs 'jax'.*criterion='magnitude'"
    ):
        structured_scores.gradient_statistics(model, [], [_tokens()])
