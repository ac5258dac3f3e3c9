import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

import tfcompress
from tfcompress.sparsity import prune_structured


def _scaled(backbone, seed, scale=3.0):
    """Kernels scaled up, so that the attention and FFN branches weigh in the residual
    stream as in a trained model (at keras-hub's initialization they barely do)."""
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if variable.path.endswith("kernel"):
            value = variable.numpy()
            variable.assign(value * scale + rng.normal(0, 0.02, value.shape).astype("float32"))
    return backbone


def _scaled_backbone(backbone_class, seed):
    keras.utils.set_random_seed(seed)
    return _scaled(
        backbone_class(
            vocabulary_size=64,
            num_layers=3,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=12,
            dropout=0.0,
        ),
        seed,
    )


def _bert(seed=0):
    return _scaled_backbone(keras_hub.models.BertBackbone, seed)


def _gpt2(seed=0):
    return _scaled_backbone(keras_hub.models.GPT2Backbone, seed)


def _llama(seed=0):
    keras.utils.set_random_seed(seed)
    return _scaled(
        keras_hub.models.Llama3Backbone(
            vocabulary_size=64,
            num_layers=3,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        ),
        seed,
    )


def _tokens(model, batch=8, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, 12), "int32")
    mask[:, 9:] = 0
    x = {"token_ids": rng.integers(1, 64, (batch, 12)).astype("int32"), "padding_mask": mask}
    if isinstance(model, keras_hub.models.BertBackbone):
        x["segment_ids"] = np.zeros((batch, 12), "int32")
    return x


def _block_outputs(model, x):
    """Each transformer block's output on `x`, at real tokens only."""
    found = []

    def grab(layer, inputs, outputs):
        found.append(np.asarray(keras.tree.flatten(outputs)[0]))

    with tfcompress.core.intercept_calls(model.transformer_layers, grab):
        model(x)
    real = x["padding_mask"].astype(bool)
    return [f[real] for f in found]


def _errors(original, pruned, x):
    return [
        float(np.mean(np.square(a - b)))
        for a, b in zip(_block_outputs(original, x), _block_outputs(pruned, x))
    ]


_BUILDS = {"bert": _bert, "gpt2": _gpt2, "llama": _llama}


@pytest.mark.parametrize("name", sorted(_BUILDS))
def test_least_squares_lowers_every_blocks_output_error_on_held_out_tokens(name):
    model = _BUILDS[name]()
    data = [_tokens(model, seed=s) for s in range(6)]
    held_out = _tokens(model, seed=99)
    kwargs = dict(heads=0.5, ffn=0.5, criterion="magnitude", representative_data=data)
    plain = _errors(model, prune_structured(model, **kwargs), held_out)
    refitted = _errors(
        model, prune_structured(model, reconstruct="least_squares", **kwargs), held_out
    )
    assert min(plain) > 1e-4
    assert all(r < 0.7 * p for r, p in zip(refitted, plain)), (plain, refitted)


def test_bias_compensation_lowers_the_error_and_changes_only_biases():
    model = _bert()
    data = [_tokens(model, seed=s) for s in range(6)]
    kwargs = dict(heads=0.5, ffn=0.5, criterion="magnitude", representative_data=data)
    plain = prune_structured(model, **kwargs)
    compensated = prune_structured(model, reconstruct="bias", **kwargs)
    changed = {
        a.path
        for a, b in zip(plain.weights, compensated.weights)
        if not np.array_equal(a.numpy(), b.numpy())
    }
    readers = {
        f"transformer_layer_{i}/self_attention_layer/attention_output/bias" for i in range(3)
    }
    readers |= {f"transformer_layer_{i}/feedforward_output_dense/bias" for i in range(3)}
    assert changed == readers
    held_out = _tokens(model, seed=99)
    assert _errors(model, compensated, held_out)[-1] < _errors(model, plain, held_out)[-1]


def test_padded_tokens_do_not_move_the_fit():
    model = _bert()
    data = [_tokens(model, seed=s) for s in range(3)]
    repadded = []
    for s, batch in enumerate(data):
        batch = dict(batch)
        ids = batch["token_ids"].copy()
        ids[:, 9:] = np.random.default_rng(50 + s).integers(1, 64, ids[:, 9:].shape)
        batch["token_ids"] = ids
        repadded.append(batch)
    kwargs = dict(heads=0.5, ffn=0.5, criterion="magnitude", reconstruct="least_squares")
    a = prune_structured(model, representative_data=data, **kwargs)
    b = prune_structured(model, representative_data=repadded, **kwargs)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-4, atol=1e-6)


def test_labelled_batches_are_fitted_like_their_inputs():
    model = _bert()
    data = [_tokens(model, seed=s) for s in range(3)]
    inputs = {k: np.concatenate([x[k] for x in data]) for k in data[0]}
    labelled = tf.data.Dataset.from_tensor_slices((inputs, np.zeros((24, 2), "float32"))).batch(8)
    kwargs = dict(heads=0.5, ffn=0.5, criterion="magnitude", reconstruct="least_squares")
    a = prune_structured(model, representative_data=data, **kwargs)
    b = prune_structured(model, representative_data=labelled, **kwargs)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=1e-5, atol=1e-6)


def test_reconstructed_model_round_trips_and_the_original_is_untouched(tmp_path):
    model = _bert()
    before = [w.numpy().copy() for w in model.weights]
    data = [_tokens(model, seed=s) for s in range(4)]
    pruned = prune_structured(
        model,
        heads=0.5,
        ffn=0.5,
        criterion="taylor",
        representative_data=data,
        reconstruct="least_squares",
    )
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    x = _tokens(model, seed=7)
    np.testing.assert_array_equal(loaded(x)["sequence_output"], pruned(x)["sequence_output"])


def test_inplace_reconstruction_matches_the_copy():
    model = _bert()
    data = [_tokens(model, seed=s) for s in range(4)]
    kwargs = dict(
        heads=0.5, ffn=0.5, criterion="magnitude", representative_data=data, reconstruct="bias"
    )
    copied = prune_structured(model, **kwargs)
    inplace = prune_structured(tfcompress.core.copy_model(model), inplace=True, **kwargs)
    x = _tokens(model, seed=7)
    np.testing.assert_allclose(
        inplace(x)["sequence_output"], copied(x)["sequence_output"], atol=1e-6
    )


@pytest.mark.parametrize(
    "build, kwargs, match",
    [
        (_bert, {"reconstruct": "lsq"}, r"`reconstruct` must be None or one of"),
        (
            _bert,
            {"reconstruct": "least_squares", "representative_data": None},
            r"reconstruct='least_squares' .* needs `representative_data`",
        ),
        (_llama, {"reconstruct": "bias"}, r"has none \(use_bias=False\).*'least_squares'"),
    ],
)
def test_bad_reconstruct_arguments_are_refused_before_any_work(build, kwargs, match):
    model = build()
    before = [w.numpy().copy() for w in model.weights]
    kwargs.setdefault("representative_data", [_tokens(model)])
    with pytest.raises(ValueError, match=match):
        prune_structured(model, heads=0.5, ffn=0.5, criterion="magnitude", inplace=True, **kwargs)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_reconstruct_with_filters_is_refused():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    with pytest.raises(ValueError, match=r"conv filters have no reconstruction"):
        prune_structured(
            model,
            filters=0.5,
            criterion="magnitude",
            representative_data=np.zeros((2, 8, 8, 1), "float32"),
            reconstruct="least_squares",
        )


def test_a_plain_keras_attention_layer_is_refitted_without_a_residual():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((10, 16))
    x = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8, name="mha")(inputs, inputs)
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    rng = np.random.default_rng(0)
    data = rng.normal(size=(64, 10, 16)).astype("float32")
    held_out = rng.normal(size=(16, 10, 16)).astype("float32")
    kwargs = dict(heads=0.5, criterion="magnitude", representative_data=data)
    reference = np.asarray(model(held_out))
    errors = {
        mode: float(
            np.mean(
                np.square(
                    np.asarray(prune_structured(model, reconstruct=mode, **kwargs)(held_out))
                    - reference
                )
            )
        )
        for mode in (None, "least_squares")
    }
    # Random heads on random data are nearly independent, so the kept ones can
    # stand in for the removed ones only a little: the gain is small, not absent.
    assert errors["least_squares"] < 0.98 * errors[None], errors


def _encoder_decoder(seed=0):
    """A BART-style model: a keras-hub encoder block feeding a decoder block's cross-attention."""
    keras.utils.set_random_seed(seed)
    source = keras.Input((10,), dtype="int32", name="source")
    target = keras.Input((8,), dtype="int32", name="target")
    embed = keras.layers.Embedding(64, 16)
    encoded = keras_hub.layers.TransformerEncoder(32, 4, name="encoder")(embed(source))
    decoder = keras_hub.layers.TransformerDecoder(32, 4, name="decoder")
    decoded = decoder(embed(target), encoded)
    model = keras.Model([source, target], keras.layers.Dense(64, name="head")(decoded))
    return _scaled(model, seed)


def _sequences(seed, batch=16):
    rng = np.random.default_rng(seed)
    return {
        "source": rng.integers(0, 64, (batch, 10)).astype("int32"),
        "target": rng.integers(0, 64, (batch, 8)).astype("int32"),
    }


def test_a_decoders_cross_attention_is_refitted_as_its_own_layer():
    model = _encoder_decoder()
    data = [_sequences(s) for s in range(4)]
    kwargs = dict(heads=0.5, criterion="magnitude", representative_data=data)
    plain = prune_structured(model, **kwargs)
    refitted = prune_structured(model, reconstruct="least_squares", **kwargs)
    output = "decoder/cross_attention/attention_output/kernel"
    kernels = {
        name: {w.path: w.numpy() for w in m.weights}
        for name, m in [("plain", plain), ("refit", refitted)]
    }
    assert not np.allclose(kernels["plain"][output], kernels["refit"][output])
    held_out = _sequences(99)
    reference = np.asarray(model(held_out))
    errors = [
        float(np.mean(np.square(np.asarray(m(held_out)) - reference))) for m in (plain, refitted)
    ]
    assert errors[1] < 0.7 * errors[0], errors


def test_cross_attention_heads_are_a_group_of_their_own():
    model = _encoder_decoder()
    pruned, report = prune_structured(
        model, heads={"decoder/cross_attention": 0.5}, criterion="magnitude", return_report=True
    )
    assert [(row["path"], row["after"]) for row in report.rows] == [("decoder/cross_attention", 2)]
    assert find_heads(pruned, "decoder/cross_attention") == 2
    assert find_heads(pruned, "decoder/self_attention") == 4


def test_the_cross_attention_branch_is_corrected_for_its_own_residual():
    from tfcompress.sparsity.structured_groups import transformer_groups
    from tfcompress.sparsity.structured_reconstruct import _reader

    model = _encoder_decoder()
    groups = {g.path: g for g in transformer_groups(model)["heads"]}
    reader, residual = _reader(model, groups["decoder/cross_attention"])
    # Post-norm: the branch is added to its query input, the self-attention sum.
    assert reader.path == "decoder/cross_attention/attention_output"
    assert residual.path == "decoder/cross_attention/query"
    assert _reader(model, groups["decoder"])[1].path == "decoder/self_attention/query"


def find_heads(model, path):
    return tfcompress.core.find_layer(model, path).layer.num_heads


def _unpadded_bert(num_layers):
    keras.utils.set_random_seed(0)
    return _scaled(
        keras_hub.models.BertBackbone(
            vocabulary_size=64,
            num_layers=num_layers,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=12,
            dropout=0.0,
        ),
        0,
    )


def test_carried_block_outputs_give_the_refit_of_full_passes(monkeypatch):
    from tfcompress.sparsity import structured_reconstruct

    model = _unpadded_bert(4)
    data = []
    for s in range(3):
        x = _tokens(model, seed=s)
        x["padding_mask"] = np.ones_like(x["padding_mask"])
        data.append(x)
    kwargs = dict(
        heads=0.5,
        ffn=0.5,
        criterion="magnitude",
        representative_data=data,
        reconstruct="least_squares",
    )
    carried = []
    find_carried = structured_reconstruct._carried
    monkeypatch.setattr(
        structured_reconstruct,
        "_carried",
        lambda *args: carried.append(find_carried(*args)) or carried[-1],
    )
    fast = prune_structured(model, **kwargs)
    assert carried[-1] is not None
    monkeypatch.setattr(structured_reconstruct, "_carried", lambda *args: None)
    slow = prune_structured(model, **kwargs)
    for a, b in zip(fast.weights, slow.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)
