import keras
import numpy as np
import pytest

from tfcompress.core import walk_layers
from tfcompress.sparsity import is_m_by_n_sparse, prune_one_shot, strip_pruning
from tfcompress.sparsity._kernel_view import kernel_view

import testing

METHODS = ["magnitude", "wanda", "sparsegpt"]


def _matrices(model, under=""):
    """`{path: (inputs, outputs) kernel matrix}` of the prunable layers under a path prefix."""
    found = {}
    for ref in walk_layers(model):
        view = kernel_view(ref.layer)
        if view is not None and ref.path.startswith(under):
            found[ref.path] = keras.ops.convert_to_numpy(view.to_matrix(ref.layer.kernel))
    return found


def _unregistered_subclassed():
    class Tower(keras.Model):  # defined here, never registered: as users write them
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = keras.layers.Dense(16, activation="relu")
            self.out = keras.layers.Dense(8)

        def call(self, x):
            return self.out(self.hidden(x))

    model = Tower()
    model(np.zeros((1, 12), "float32"))
    return model


def _llama3():
    import keras_hub

    return keras_hub.models.Llama3Backbone(
        vocabulary_size=testing.VOCAB,
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
    )


def _einsum_model():
    """EinsumDense layers whose largest kernel axis is an output axis."""
    inputs = keras.Input((4,))
    heads = keras.layers.EinsumDense("ab,bcd->acd", output_shape=(2, 8), name="split")(inputs)
    merged = keras.layers.EinsumDense("abc,bcd->ad", output_shape=(12,), name="merge")(heads)
    return keras.Model(inputs, merged)


MODELS = {
    "sequential": (
        lambda: keras.Sequential(
            [keras.Input((12,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)]
        ),
        "",
    ),
    "functional": (testing.functional_dense, ""),
    "subclassed": (_unregistered_subclassed, ""),
    "einsum": (_einsum_model, ""),
    "bert": (lambda: testing.bert_backbone(2), "transformer_layer"),
    "gpt2": (lambda: testing.gpt2_backbone(2), "transformer_layer"),
    "llama3": (_llama3, "transformer_layer"),
}


def _data(model, batch=16):
    return (
        testing.inputs_for(model, batch=batch)
        if hasattr(model, "token_embedding")
        else (
            np.random.default_rng(1)
            .normal(size=(batch,) + tuple(model.inputs[0].shape[1:]))
            .astype("float32")
            if hasattr(model, "inputs") and model.inputs
            else np.random.default_rng(1).normal(size=(batch, 12)).astype("float32")
        )
    )


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(MODELS))
def test_each_output_loses_exactly_the_requested_share_and_n_m_holds(name, method):
    factory, under = MODELS[name]
    keras.utils.set_random_seed(0)
    model = factory()
    data = _data(model)
    before = [w.numpy().copy() for w in model.weights]
    targets = _matrices(model, under)
    assert targets

    unstructured = prune_one_shot(model, 0.5, method, data, verbose=False)
    n_m = prune_one_shot(
        model, method=method, representative_data=data, sparsity_m_by_n=(2, 4), verbose=False
    )

    for path, matrix in _matrices(unstructured, under).items():
        if method == "magnitude":  # the baseline ranks the whole layer
            assert (matrix == 0).sum() == matrix.size // 2, path
        else:  # every output (column) keeps exactly half of its inputs, whatever the kernel's rank
            np.testing.assert_array_equal(
                (matrix == 0).sum(axis=0), np.full(matrix.shape[1], matrix.shape[0] // 2), path
            )
    for path, matrix in _matrices(n_m, under).items():
        assert bool(is_m_by_n_sparse(matrix, 2, 4, axis=0)), path
        assert (matrix == 0).mean() == 0.5, path
    # Only the targeted kernels changed, and the model passed in is untouched.
    changed = [
        not np.array_equal(w.numpy(), b) for w, b in zip(unstructured.weights, before, strict=True)
    ]
    kernels = {
        id(ref.layer.kernel)
        for ref in walk_layers(model)
        if kernel_view(ref.layer) is not None and ref.path.startswith(under)
    }
    assert changed == [id(w) in kernels for w in model.weights]
    assert all(np.array_equal(w.numpy(), b) for w, b in zip(model.weights, before))


def test_einsum_input_axes_come_from_the_equation():
    keras.utils.set_random_seed(0)
    model = _einsum_model()
    pruned = prune_one_shot(
        model,
        method="wanda",
        representative_data=_data(model),
        sparsity_m_by_n=(2, 4),
        verbose=False,
    )
    split = pruned.get_layer("split").kernel.numpy()  # (4 inputs, 2, 8): axis 0 is contracted
    assert (split == 0).sum(axis=0).tolist() == [[2] * 8] * 2
    merge = pruned.get_layer("merge").kernel.numpy()  # (2, 8) contracted, 12 out
    assert bool(is_m_by_n_sparse(merge.reshape(16, 12), 2, 4, axis=0))
    assert ((merge == 0).reshape(16, 12).sum(axis=0) == 8).all()


def _correlated_layer(seed=0, inputs=64, outputs=32, rows=2048, rank=16):
    """A Dense layer and inputs of very different scales, mostly spanned by `rank` directions."""
    rng = np.random.default_rng(seed)
    scales = np.exp(rng.normal(size=inputs))
    shared = rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, inputs)) / np.sqrt(rank)
    x = ((shared + 0.3 * rng.normal(size=(rows, inputs))) * scales).astype("float32")
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs, use_bias=False)])
    return model, x


def _reconstruction_error(model, pruned, x):
    w, w_pruned = model.layers[0].kernel.numpy(), pruned.layers[0].kernel.numpy()
    return float(np.linalg.norm(x @ w - x @ w_pruned) / np.linalg.norm(x @ w))


@pytest.mark.parametrize("m_by_n", [None, (2, 4)])
def test_sparsegpt_reconstructs_a_layer_better_than_wanda_and_wanda_than_magnitude(m_by_n):
    model, x = _correlated_layer()
    errors = {
        method: _reconstruction_error(
            model,
            prune_one_shot(model, 0.5, method, x[:1024], sparsity_m_by_n=m_by_n, verbose=False),
            x[1024:],
        )
        for method in METHODS
    }
    # Held-out rows: the improvement is not a fit to the calibration rows.
    assert errors["sparsegpt"] < 0.8 * errors["wanda"], errors
    assert errors["wanda"] < 0.8 * errors["magnitude"], errors


def test_layers_are_calibrated_on_the_outputs_of_the_pruned_layers_before_them():
    keras.utils.set_random_seed(0)
    first, second = keras.layers.Dense(16, activation="relu"), keras.layers.Dense(8)
    model = keras.Sequential([keras.Input((12,)), first, second])
    x = np.random.default_rng(2).normal(size=(64, 12)).astype("float32")
    pruned = prune_one_shot(model, 0.5, "wanda", x, verbose=False)

    def wanda(kernel, inputs):
        scores = np.abs(kernel) * np.linalg.norm(inputs, axis=0)[:, None]
        keep = np.argsort(np.argsort(-scores, axis=0, kind="stable"), axis=0) < kernel.shape[0] // 2
        return kernel * keep

    w1 = wanda(first.kernel.numpy(), x)
    hidden = np.maximum(x @ w1 + first.bias.numpy(), 0)  # the pruned first layer's outputs
    np.testing.assert_array_equal(pruned.layers[0].kernel.numpy(), w1)
    np.testing.assert_array_equal(
        pruned.layers[1].kernel.numpy(), wanda(second.kernel.numpy(), hidden)
    )


def test_gpt2_causal_lm_end_to_end(tmp_path):
    import keras_hub

    from tfcompress import export
    from tfcompress.quantization import quantize_model

    keras.utils.set_random_seed(0)
    lm = keras_hub.models.GPT2CausalLM(testing.gpt2_backbone(2), preprocessor=None)
    data = testing.token_inputs(32, segments=False)
    pruned = prune_one_shot(lm, 0.5, "sparsegpt", data, verbose=False)

    assert type(pruned) is type(lm)
    zeros = {path: matrix == 0 for path, matrix in _matrices(pruned).items()}
    assert len(zeros) == 12 and all(z.mean() == 0.5 for z in zeros.values())
    original, after = lm(data), pruned(data)
    assert np.isfinite(after).all() and not np.allclose(original, after)
    testing.run_model_saving_test(pruned, data, tmp_path)

    stripped = strip_pruning(pruned)
    testing.assert_outputs_close(stripped(data), after)

    qat = quantize_model(pruned)
    kept = 0
    for ref in walk_layers(qat):
        if hasattr(ref.layer, "preserve_sparsity") and ref.layer.preserve_sparsity:
            kept += 1
    assert kept == 12

    result = export.to_tflite(pruned.backbone, "float32", sample=data)
    assert result.checks["outputs_match"]["passed"]


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sparsity": 1.0}, ValueError, r"`sparsity` must be in \[0, 1\). Received: sparsity=1.0"),
        (
            {"sparsity": -0.1},
            ValueError,
            r"`sparsity` must be in \[0, 1\). Received: sparsity=-0.1",
        ),
        (
            {"sparsity": "half"},
            TypeError,
            r"`sparsity` must be a float in \[0, 1\). Received: sparsity='half'",
        ),
        (
            {"method": "obs"},
            ValueError,
            r"`method` must be one of \('magnitude', 'wanda', 'sparsegpt'\). "
            r"Received: method='obs'",
        ),
        ({"representative_data": None}, ValueError, r"method='wanda' needs `representative_data`"),
        ({"representative_data": []}, ValueError, r"`representative_data` yielded no batches"),
        (
            {"sparsity_m_by_n": (4, 2)},
            ValueError,
            r"`sparsity_m_by_n` must be \(m, n\) with 0 < m < n",
        ),
        (
            {"sparsity_m_by_n": (2, 5)},
            ValueError,
            r"groups 5 consecutive inputs, but layer '\S*dense\S*' "
            r"has 12 inputs",
        ),
        (
            {"sparsity_m_by_n": (1, 4), "sparsity": 0.75},
            ValueError,
            r"prunes 0.25 of the weights, but "
            r"sparsity=0.75 was passed too",
        ),
    ],
)
def test_bad_arguments_raise_before_any_work(kwargs, error, message, monkeypatch):
    from tfcompress.sparsity import one_shot

    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16)])
    monkeypatch.setattr(one_shot, "copy_model", lambda m: pytest.fail("work started"))
    arguments = {
        "sparsity": 0.5,
        "method": "wanda",
        "representative_data": np.ones((4, 12), "float32"),
        **kwargs,
    }
    with pytest.raises(error, match=message):
        prune_one_shot(model, verbose=False, **arguments)


def test_a_model_without_dense_layers_has_nothing_to_prune():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    with pytest.raises(
        ValueError,
        match=r"has no Dense or EinsumDense layer .* nothing to prune.*prune_low_magnitude",
    ):
        prune_one_shot(model, method="magnitude")


def test_magnitude_needs_no_data_and_ranks_the_whole_layer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16)])
    pruned = prune_one_shot(model, 0.25, "magnitude", verbose=False)
    kernel, result = model.layers[0].kernel.numpy(), pruned.layers[0].kernel.numpy()
    threshold = np.sort(np.abs(kernel).ravel())[48]
    np.testing.assert_array_equal(result, np.where(np.abs(kernel) >= threshold, kernel, 0))


def test_carrying_block_outputs_gives_what_rerunning_the_model_gives(monkeypatch):
    import keras_hub

    from tfcompress.sparsity import _calibration

    keras.utils.set_random_seed(0)
    lm = keras_hub.models.GPT2CausalLM(testing.gpt2_backbone(3), preprocessor=None)
    data = testing.token_inputs(16, segments=False)
    assert _calibration.carried_inputs(lm, [data], _calibration.transformer_blocks(lm)) is not None
    carried = prune_one_shot(lm, 0.5, "sparsegpt", data, verbose=False)
    monkeypatch.setattr(_calibration, "carried_inputs", lambda *args: None)
    rerun = prune_one_shot(lm, 0.5, "sparsegpt", data, verbose=False)
    for a, b in zip(carried.weights, rerun.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_padded_calibration_tokens_make_blocks_rerun_through_the_model():
    from tfcompress.sparsity import _calibration

    keras.utils.set_random_seed(0)
    backbone = testing.bert_backbone(2)
    data = testing.token_inputs(8)
    data["padding_mask"][:, 5:] = 0  # a block called without the mask would attend to padding
    assert _calibration.carried_inputs(backbone, [data], backbone.transformer_layers) is None
    pruned = prune_one_shot(backbone, 0.5, "wanda", data, verbose=False)
    for path, matrix in _matrices(pruned, "transformer_layer").items():
        assert ((matrix == 0).sum(axis=0) == matrix.shape[0] // 2).all(), path
