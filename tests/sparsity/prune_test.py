import keras
import numpy as np
import pytest

import tfcompress
from tfcompress.sparsity import (
    ConstantSparsity,
    PolynomialDecay,
    PruneLowMagnitude,
    UpdatePruningStep,
    prune_low_magnitude,
)
from tfcompress.sparsity.masks import is_m_by_n_sparse
from tfcompress.sparsity.prune_registry import reduction_axis
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers

import testing

BERT_KERNELS = {
    "query",
    "key",
    "value",
    "attention_output",
    "feedforward_intermediate_dense",
    "feedforward_output_dense",
}

# factory, names of the layers whose kernels must be wrapped, skipped paths.
MODELS = {
    "sequential": (
        testing.sequential_cnn,
        {"conv", "depthwise", "separable", "head"},
        [],
    ),
    "functional": (testing.functional_dense, {"dense_1", "dense_2", "logits"}, []),
    "conv1d_conv3d": (testing.conv_family, {"conv1d", "conv3d"}, []),
    "subclassed": (testing.subclassed, {"embed", "inner", "outer", "head"}, []),
    "nested": (testing.nested, {"inner_dense", "inner", "outer", "head"}, []),
    "bert": (
        testing.bert_backbone,
        BERT_KERNELS | {"pooled_dense"},
        ["token_embedding", "position_embedding", "segment_embedding"],
    ),
    "gpt2": (
        testing.gpt2_backbone,
        BERT_KERNELS,
        ["token_embedding", "position_embedding"],
    ),
}


def _kernels(model):
    return {
        w.path: keras.ops.convert_to_numpy(w)
        for w in model.weights
        if w.name in ("kernel", "pointwise_kernel", "depthwise_kernel")
    }


@pytest.mark.parametrize("name", sorted(MODELS))
def test_wraps_every_supported_kernel_and_keeps_the_model(name):
    factory, expected, skipped = MODELS[name]
    model = factory()
    inputs = testing.inputs_for(model)
    before = testing.weights_by_path(model)

    pruned = prune_low_magnitude(model, ConstantSparsity(0.5, 0, frequency=1))

    testing.assert_keeps_class(pruned, model)
    assert pruned.name == model.name
    wrappers = pruning_wrappers(pruned)
    assert {w.layer.name for w in wrappers} == expected
    assert pruned.tfcompress_skipped == skipped

    # Inner layers keep their names (Keras drops the path prefix of layers
    # of a nested Sequential rebuilt from config, so compare the ends).
    def ends(m):
        return sorted("/".join(path.split("/")[-2:]) for path in _kernels(m))

    assert ends(pruned) == ends(model)
    # Masks start at ones: the pruned model computes what the original does.
    testing.assert_outputs_close(model(inputs), pruned(inputs))
    for wrapper in wrappers:
        names = [w.name for w, _ in wrapper.pruning_vars]
        assert names and not {"bias", "gamma", "beta", "embeddings"} & set(names)
    # The original model is not touched, and shares no variables.
    wrappers[0].update_masks(0.5)
    after = testing.weights_by_path(model)
    for path, value in before.items():
        np.testing.assert_array_equal(value, after[path], path)
    assert not {id(v) for v in model.weights} & {id(v) for v in pruned.weights}


def test_inplace_prunes_the_given_model():
    model = testing.functional_dense()
    pruned = prune_low_magnitude(model, ConstantSparsity(0.5, 0), inplace=True)
    assert pruned is model
    for wrapper in pruning_wrappers(model):
        wrapper.update_masks(0.5)
    for path, kernel in _kernels(model).items():
        assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02), path


def test_embeddings_only_when_asked():
    model = testing.bert_backbone()
    pruned = prune_low_magnitude(model, prune_embeddings=True)
    names = {w.layer.name for w in pruning_wrappers(pruned)}
    assert {"token_embedding", "segment_embedding"} <= names
    assert pruned.tfcompress_skipped == []


def test_text_classifier_task_model():
    import keras_hub

    model = keras_hub.models.BertTextClassifier(
        testing.bert_backbone(), num_classes=2, preprocessor=None
    )
    pruned = prune_low_magnitude(model)
    testing.assert_keeps_class(pruned, model)
    names = {w.layer.name for w in pruning_wrappers(pruned)}
    assert names == BERT_KERNELS | {"pooled_dense", "logits"}
    inputs = testing.token_inputs()
    testing.assert_outputs_close(model(inputs), pruned(inputs))


def test_single_layer_and_list_of_layers():
    dense = keras.layers.Dense(4)
    dense.build((None, 8))
    wrapper = prune_low_magnitude(dense, ConstantSparsity(0.75, 0))
    assert isinstance(wrapper, PruneLowMagnitude) and wrapper.layer is dense
    assert wrapper.built
    conv = keras.layers.Conv2D(2, 3)
    wrappers = prune_low_magnitude([keras.layers.Dense(3), conv])
    assert [w.layer for w in wrappers][1] is conv
    # An unbuilt wrapper builds on first call, inside a model.
    model = keras.Sequential([keras.Input((8,)), wrappers[0]])
    assert model(np.ones((2, 8), "float32")).shape == (2, 3)


class _KernelSparsity(keras.callbacks.Callback):
    """Records every pruned kernel's sparsity after each batch."""

    def __init__(self):
        super().__init__()
        self.history = []

    def on_train_batch_end(self, batch, logs=None):
        self.history.append(
            [
                float(np.mean(keras.ops.convert_to_numpy(w) == 0))
                for wrapper in pruning_wrappers(self.model)
                for w, _ in wrapper.pruning_vars
            ]
        )


@pytest.mark.parametrize("name", ["functional", pytest.param("gpt2", marks=pytest.mark.slow)])
def test_polynomial_decay_reaches_target_at_end_step(name):
    model = MODELS[name][0]()
    inputs = testing.inputs_for(model, batch=4 * 7)
    targets = np.random.default_rng(1).normal(size=testing.outputs_numpy(model(inputs))[0].shape)
    schedule = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=6, frequency=4)
    pruned = prune_low_magnitude(model, schedule)
    pruned.compile("adam", "mse", jit_compile=False)
    recorder = _KernelSparsity()
    pruned.fit(
        inputs,
        targets,
        batch_size=4,
        shuffle=False,
        verbose=0,
        callbacks=[UpdatePruningStep(), recorder],
    )
    # Steps 0..5: the last update was at step 4, below the target.
    assert all(value < 0.8 - 0.02 for value in recorder.history[5])
    # Step 6 is end_step: every kernel reaches 0.8 although 4 does not divide 6.
    for wrapper in pruning_wrappers(pruned):
        assert int(wrapper.pruning_step.numpy()) == 6
        for weight, mask in wrapper.pruning_vars:
            size = int(np.prod(weight.shape))
            expected = round(0.8 * size) / size
            value = keras.ops.convert_to_numpy(weight)
            assert np.mean(value == 0) == pytest.approx(expected), weight.path
            assert np.mean(keras.ops.convert_to_numpy(mask) == 0) == pytest.approx(expected)


def test_m_by_n_along_the_input_axis():
    model = testing.bert_backbone()
    pruned = prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
    wrappers = pruning_wrappers(pruned)
    for wrapper in wrappers:
        wrapper.update_masks()
        for weight, _ in wrapper.pruning_vars:
            axis = reduction_axis(wrapper.layer, weight)
            assert weight.shape[axis] in (4, 8, 16)  # the contracted size
            assert bool(is_m_by_n_sparse(weight, 2, 4, axis)), weight.path
            assert np.mean(keras.ops.convert_to_numpy(weight) == 0) == 0.5
    query = next(w for w in wrappers if w.layer.name == "query")
    assert reduction_axis(query.layer, query.layer.kernel) == 0  # (hidden, h, d)
    output = next(w for w in wrappers if w.layer.name == "attention_output")
    assert reduction_axis(output.layer, output.layer.kernel) == 1  # (h, d, hidden)


def test_block_sparsity_prunes_whole_blocks():
    model = testing.functional_dense()
    pruned = prune_low_magnitude(
        model, ConstantSparsity(0.5, 0), block_size=(4, 2), block_pooling_type="MAX"
    )
    wrapper = next(w for w in pruning_wrappers(pruned) if w.layer.name == "dense_1")
    wrapper.update_masks()
    mask = keras.ops.convert_to_numpy(wrapper.masks[0])  # (16, 32)
    tiles = mask.reshape(4, 4, 16, 2).transpose(0, 2, 1, 3).reshape(64, 8)
    assert set(tiles.min(axis=1)) == set(tiles.max(axis=1)) == {0.0, 1.0}
    assert (tiles.min(axis=1) == tiles.max(axis=1)).all()
    assert mask.mean() == 0.5


class _FakeTfKerasModel:
    pass


_FakeTfKerasModel.__module__ = "tf_keras.src.engine.training"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            {"pruning_schedule": "ConstantSparsity(1.5)"},
            TypeError,
            "`pruning_schedule` must be",
        ),
        ({"block_size": (0, 2)}, ValueError, r"`block_size` must be.*\(0, 2\)"),
        ({"block_size": 4}, ValueError, r"block_size=4"),
        ({"block_pooling_type": "SUM"}, ValueError, "block_pooling_type='SUM'"),
        ({"sparsity_m_by_n": (4, 2)}, ValueError, r"sparsity_m_by_n=\(4, 2\)"),
        (
            {"sparsity_m_by_n": (2, 4), "block_size": (2, 2)},
            ValueError,
            "cannot be combined",
        ),
        ({"pruning_policy": "xnnpack"}, ValueError, "pruning_policy='xnnpack'"),
    ],
)
def test_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        prune_low_magnitude(testing.functional_dense(), **kwargs)


def test_sparsity_out_of_range():
    with pytest.raises(ValueError, match=r"target_sparsity=1.5"):
        prune_low_magnitude(testing.functional_dense(), ConstantSparsity(1.5, 0))


def test_m_by_n_not_dividing_a_kernel_says_which():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="d")])
    with pytest.raises(ValueError, match=r"d/kernel \(shape \(6, 4\)\).*not divisible by 4"):
        prune_low_magnitude(model, sparsity_m_by_n=(2, 4))


def test_tf_keras_model_is_refused():
    with pytest.raises(TypeError, match="tf_keras.*build the model with `import keras`"):
        prune_low_magnitude(_FakeTfKerasModel())


def test_unsupported_layer_passed_explicitly():
    with pytest.raises(ValueError, match="'norm' of type LayerNormalization cannot"):
        prune_low_magnitude(keras.layers.LayerNormalization(name="norm"))
    with pytest.raises(ValueError, match="Pass prune_embeddings=True"):
        prune_low_magnitude([keras.layers.Embedding(10, 4)])
    with pytest.raises(TypeError, match=r"to_prune\[1\]"):
        prune_low_magnitude([keras.layers.Dense(2), "dense"])


def test_already_pruned_layer_and_model():
    wrapper = prune_low_magnitude(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="already pruned"):
        prune_low_magnitude(wrapper)
    pruned = prune_low_magnitude(testing.functional_dense())
    with pytest.raises(ValueError, match="already pruned"):
        prune_low_magnitude(pruned)


def test_model_with_nothing_to_prune():
    model = keras.Sequential([keras.Input((4,)), keras.layers.LayerNormalization(name="norm")])
    with pytest.raises(ValueError, match="has no layer tfcompress can prune"):
        prune_low_magnitude(model)


def test_public_path():
    assert tfcompress.sparsity.prune_low_magnitude is prune_low_magnitude


@pytest.mark.parametrize("inplace", [False, True], ids=["copy", "inplace"])
def test_unregistered_subclassed_model_prunes_strips_saves_and_exports(inplace, tmp_path):
    model = testing.net()
    x, y = testing.net_data()
    before = model(x)
    pruned = prune_low_magnitude(model, sparsity_m_by_n=(2, 4), inplace=inplace)
    assert (pruned is model) == inplace
    assert isinstance(pruned, testing.Net)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruned.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[UpdatePruningStep()])
    wrappers = pruning_wrappers(pruned)
    assert len(wrappers) == 5
    assert [type(layer) for layer in pruned.layers] == [testing.NetBlock] * 2 + [PruneLowMagnitude]
    for wrapper in wrappers:
        kernel = wrapper.layer.kernel
        assert bool(is_m_by_n_sparse(kernel, 2, 4, 0)), kernel.path
    if not inplace:  # the user's model is left as it was
        assert not pruning_wrappers(model)
        testing.assert_outputs_close(model(x), before)

    stripped = tfcompress.sparsity.strip_pruning(pruned)
    assert type(stripped) is testing.Net and not pruning_wrappers(stripped)
    assert "tfcompress_recipe" not in [layer.name for layer in stripped.layers]
    path = str(tmp_path / "net.weights.h5")
    stripped.save_weights(path)
    fresh = testing.net(seed=1)
    fresh.load_weights(path)
    testing.assert_outputs_close(fresh(x), pruned(x))
    exported = tfcompress.export.to_tflite(stripped, "float32", sample=x[:4])
    assert exported.checks["outputs_match"]["passed"]
