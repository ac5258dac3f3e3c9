import json
import os
import zipfile

import keras
import numpy as np
import pytest

from tfcompress.core import CompressionWrapper
from tfcompress.core.layer_tree import walk_layers
from tfcompress.saving import load_model
from tfcompress.sparsity import (
    ConstantSparsity,
    PolynomialDecay,
    PruneLowMagnitude,
    UpdatePruningStep,
    prune_low_magnitude,
)
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers

import testing

STEPS, SPLIT, BATCH = 6, 3, 4


def _data(model):
    inputs = testing.inputs_for(model, batch=BATCH * STEPS, seed=3)
    shape = testing.outputs_numpy(model(inputs))[0].shape
    targets = np.random.default_rng(4).normal(size=shape).astype("float32")
    return inputs, targets


def _slice(data, start, stop):
    return keras.tree.map_structure(lambda a: a[start * BATCH : stop * BATCH], data)


def _schedule():
    return PolynomialDecay(0.0, 0.75, 0, STEPS - 1, power=1, frequency=1)


def _prune(model):
    pruned = prune_low_magnitude(model, _schedule())
    pruned.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=False)
    return pruned


def _fit(model, inputs, targets, start, stop, callbacks=None):
    """Fits batches `start` to `stop`; `callbacks` default to a new `UpdatePruningStep`."""
    model.fit(
        _slice(inputs, start, stop),
        _slice(targets, start, stop),
        batch_size=BATCH,
        shuffle=False,
        verbose=0,
        callbacks=[UpdatePruningStep()] if callbacks is None else callbacks,
    )


def _straight_and_stopped(model):
    """`(inputs, targets, straight, stopped)`: two pruned copies of `model` on the same
    batches, `straight` fit for all STEPS, `stopped` after SPLIT of them."""
    inputs, targets = _data(model)
    straight, stopped = _prune(model), _prune(model)
    _fit(straight, inputs, targets, 0, STEPS)
    _fit(stopped, inputs, targets, 0, SPLIT)
    return inputs, targets, straight, stopped


def _assert_same_pruning_state(a, b):
    testing.assert_same_weights(a, b)
    for x, y in zip(pruning_wrappers(a), pruning_wrappers(b), strict=True):
        assert int(x.pruning_step.numpy()) == int(y.pruning_step.numpy()) == STEPS - 1
        for (wx, mx), (wy, my) in zip(x.pruning_vars, y.pruning_vars):
            np.testing.assert_array_equal(mx.numpy(), my.numpy())
            assert np.mean(wy.numpy() == 0) == pytest.approx(
                round(0.75 * wy.numpy().size) / wy.numpy().size
            )


@pytest.mark.parametrize(
    "factory, plain_keras",
    [
        (testing.functional_dense, True),
        pytest.param(testing.sequential_cnn, True, marks=pytest.mark.slow),
        (testing.subclassed, True),
        pytest.param(testing.gpt2_backbone, True, marks=pytest.mark.slow),
    ],
    ids=["functional", "sequential", "subclassed", "gpt2"],
)
def test_resume_from_keras_file_matches_uninterrupted_run(factory, plain_keras, tmp_path):
    model = factory()
    inputs, targets, straight, resumed = _straight_and_stopped(model)
    path = os.path.join(tmp_path, "mid.keras")
    resumed.save(path)
    restored = load_model(path)
    testing.assert_keeps_class(restored, model)
    testing.assert_outputs_close(resumed(inputs), restored(inputs))
    if plain_keras:
        plain = keras.saving.load_model(path)
        testing.assert_same_weights(plain, restored)
    assert int(restored.optimizer.iterations.numpy()) == SPLIT
    _fit(restored, inputs, targets, SPLIT, STEPS)
    _assert_same_pruning_state(straight, restored)


def _compress(technique, model):
    from tfcompress.quantization import quantize_model

    if technique == "qat":
        return quantize_model(model)
    pruned = prune_low_magnitude(model, _schedule())
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    return pruned


def _wrapper_count(model):
    return sum(isinstance(r.layer, CompressionWrapper) for r in walk_layers(model))


@pytest.mark.parametrize("technique", ["prune", "qat"])
@pytest.mark.parametrize(
    "factory", [testing.bert_backbone, testing.gpt2_backbone], ids=["bert", "gpt2"]
)
def test_keras_loader_reads_compressed_keras_hub_backbones(factory, technique, tmp_path):
    model = _compress(technique, factory(num_layers=2))
    inputs = testing.inputs_for(model)
    if technique == "qat":
        model(inputs, training=True)  # moves the activation ranges off their start
    restored = testing.run_model_saving_test(
        model, inputs, tmp_path, loader=keras.saving.load_model
    )
    assert _wrapper_count(restored) == _wrapper_count(model) > 0
    testing.assert_same_weights(model, restored)


@pytest.mark.parametrize("technique", ["prune", "qat"])
def test_model_checkpoint_files_load_with_keras_and_resume(technique, tmp_path):
    straight = _compress(technique, testing.gpt2_backbone())
    resumed = _compress(technique, testing.gpt2_backbone())
    resumed.set_weights(straight.get_weights())
    inputs, targets = _data(straight)
    path = str(tmp_path / "checkpoint.keras")
    callbacks = [UpdatePruningStep()] if technique == "prune" else []

    def fit(model, start, stop, extra=()):
        _fit(model, inputs, targets, start, stop, callbacks + list(extra))

    for model in (straight, resumed):
        model.compile(keras.optimizers.Adam(0.01), "mse", jit_compile=False)
    fit(straight, 0, STEPS)
    fit(resumed, 0, SPLIT, [keras.callbacks.ModelCheckpoint(path)])
    restored = keras.saving.load_model(path)
    assert _wrapper_count(restored) == _wrapper_count(resumed) > 0
    testing.assert_same_weights(resumed, restored)
    assert int(restored.optimizer.iterations.numpy()) == SPLIT
    fit(restored, SPLIT, STEPS)
    testing.assert_same_weights(straight, restored)


def test_resume_from_weights_checkpoint_and_rebuild(tmp_path):
    inputs, targets, straight, resumed = _straight_and_stopped(testing.functional_dense())
    path = os.path.join(tmp_path, "mid.weights.h5")
    resumed.save_weights(path)

    rebuilt = _prune(testing.functional_dense())
    rebuilt.optimizer.build(rebuilt.trainable_variables)
    rebuilt.load_weights(path)
    assert int(rebuilt.optimizer.iterations.numpy()) == SPLIT
    _fit(rebuilt, inputs, targets, SPLIT, STEPS)
    _assert_same_pruning_state(straight, rebuilt)


def test_keras_hub_backbone_round_trip(tmp_path):
    pruned = prune_low_magnitude(testing.bert_backbone(num_layers=2))
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    inputs = testing.token_inputs()
    restored = testing.run_model_saving_test(pruned, inputs, tmp_path, loader=load_model)
    assert len(pruning_wrappers(restored)) == len(pruning_wrappers(pruned)) == 13
    testing.assert_same_weights(pruned, restored)
    with zipfile.ZipFile(os.path.join(tmp_path, "model.keras")) as archive:
        config = json.loads(archive.read("config.json"))
    assert len(config["config"]["tfcompress_wrappers"]) == 13
    # Saved again from the loaded model, the recipe is still there.
    again = testing.run_model_saving_test(
        restored, inputs, tmp_path, loader=load_model, name="again"
    )
    assert all(isinstance(w, PruneLowMagnitude) for w in pruning_wrappers(again))


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class Unnamed(keras.Model):
    """Sublayers with generated names, which differ in the reloaded model."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.first = keras.layers.Dense(4)
        self.second = keras.layers.Dense(2)

    def call(self, inputs):
        return self.second(self.first(inputs))


def test_layers_with_generated_names_are_found_again(tmp_path):
    model = Unnamed()
    model(np.ones((1, 3), "float32"))
    pruned = prune_low_magnitude(model)
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    keras.layers.Dense(1)  # moves the name counter: the reload gets dense_N+1
    restored = testing.run_model_saving_test(
        pruned, np.ones((2, 3), "float32"), tmp_path, loader=load_model
    )
    assert [w.layer.name for w in pruning_wrappers(restored)] != [
        w.layer.name for w in pruning_wrappers(pruned)
    ]
    testing.assert_same_weights(pruned, restored)


@pytest.mark.parametrize("factory", [testing.sequential_cnn, testing.functional_dense])
def test_pruned_plain_models_load_with_keras(factory, tmp_path):
    pruned = prune_low_magnitude(factory())
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    restored = testing.run_model_saving_test(
        pruned, testing.inputs_for(pruned), tmp_path, loader=keras.saving.load_model
    )
    assert len(pruning_wrappers(restored)) == len(pruning_wrappers(pruned))
    testing.assert_same_weights(pruned, restored)


def test_plain_model_file_loads_like_keras(tmp_path):
    model = testing.functional_dense()
    inputs = testing.inputs_for(model)
    restored = testing.run_model_saving_test(model, inputs, tmp_path, loader=load_model)
    assert not pruning_wrappers(restored)


@pytest.mark.parametrize("name", ["missing.keras", "model.h5"])
def test_bad_path(name, tmp_path):
    with pytest.raises(ValueError, match="must be an existing .keras file"):
        load_model(os.path.join(tmp_path, name))


def test_not_an_archive(tmp_path):
    path = os.path.join(tmp_path, "broken.keras")
    with open(path, "w") as f:
        f.write("not a zip")
    with pytest.raises(ValueError, match="is not a valid .keras archive"):
        load_model(path)


def _pooled(backbone):
    """A keras-hub backbone inside a functional model, as a task head uses it."""
    inputs = {
        name: keras.Input((testing.SEQ,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    hidden = backbone(inputs)["sequence_output"]
    return keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(hidden))


@pytest.mark.parametrize(
    "nest_first", [True, False], ids=["wrap-the-outer-model", "wrap-the-backbone"]
)
def test_compressed_backbone_inside_a_functional_model_reloads(nest_first, tmp_path):
    if nest_first:
        model = prune_low_magnitude(_pooled(testing.bert_backbone(num_layers=2)))
    else:
        model = _pooled(prune_low_magnitude(testing.bert_backbone(num_layers=2)))
    for wrapper in pruning_wrappers(model):
        wrapper.update_masks(0.5)
    inputs = testing.token_inputs()
    for loader in (load_model, keras.saving.load_model):
        restored = testing.run_model_saving_test(model, inputs, tmp_path, loader=loader)
        assert len(pruning_wrappers(restored)) == len(pruning_wrappers(model)) == 13
        testing.assert_same_weights(model, restored)


def test_quantized_backbone_inside_a_functional_model_reloads(tmp_path):
    from tfcompress.quantization import QuantizeWrapper, quantize_model

    model = _pooled(quantize_model(testing.bert_backbone(num_layers=1)))
    inputs = testing.token_inputs()
    model(inputs, training=True)  # moves the activation ranges off their start
    restored = testing.run_model_saving_test(model, inputs, tmp_path, loader=load_model)

    def count(m):
        return sum(isinstance(r.layer, QuantizeWrapper) for r in walk_layers(m))

    assert count(restored) == count(model) > 0
    testing.assert_same_weights(model, restored)


def test_recipe_of_a_layer_missing_from_the_rebuilt_model(tmp_path):
    model = _pooled(prune_low_magnitude(testing.bert_backbone(num_layers=1)))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    edited = os.path.join(tmp_path, "edited.keras")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                backbone = next(
                    layer
                    for layer in config["config"]["layers"]
                    if "tfcompress_wrappers" in layer["config"]
                )
                backbone["config"]["tfcompress_wrappers"][0]["indices"] = [99]
                content = json.dumps(config)
            target.writestr(item.filename, content)
    with pytest.raises(
        KeyError,
        match=(
            r"wraps the EinsumDense at 'transformer_layer_0/self_attention_layer/query', "
            r"which model 'bert_backbone\w*' does not have"
        ),
    ):
        load_model(edited)


def test_fresh_process_needs_tfcompress_imported_and_says_so(tmp_path):
    from tfcompress.quantization import quantize_model

    path = str(tmp_path / "q.keras")
    model = quantize_model(testing.bert_backbone())
    model(testing.token_inputs(), training=True)
    model.save(path)
    out = testing.run_python(f"""
import keras
try:
    keras.saving.load_model({path!r})
except TypeError as error:
    print("REFUSED", error)
import tfcompress.saving
model = keras.saving.load_model({path!r})
print("LOADED", type(model).__name__, len(model.weights))
""")
    # Without tfcompress, Keras does not rebuild a BertBackbone without its wrappers.
    assert "REFUSED Could not locate class 'BertBackbone'" in out
    assert "'module': 'tfcompress.core.recipe'" in out
    assert f"LOADED BertBackbone {len(model.weights)}" in out


def test_compressed_subclassed_model_pickles(tmp_path):
    # Keras models pickle (for distributed frameworks); a compressed one must too.
    import pickle

    model = Unnamed()
    model(np.ones((1, 3), "float32"))
    pruned = prune_low_magnitude(model)
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    restored = pickle.loads(pickle.dumps(pruned))
    assert type(restored).__name__ == "Unnamed"
    assert len(pruning_wrappers(restored)) == len(pruning_wrappers(pruned)) == 2
    testing.assert_same_weights(pruned, restored)
    inputs = np.ones((2, 3), "float32")
    testing.assert_outputs_close(restored(inputs), pruned(inputs))


def test_file_of_an_earlier_tfcompress_says_why_it_cannot_load(tmp_path):
    # Earlier versions saved the plain config and the wrappers in an asset
    # (`assets/layers/recipe_holder/tfcompress_recipe.json`).
    from tfcompress.core.recipe import wrapper_recipe

    model = Unnamed()
    model(np.ones((1, 3), "float32"))
    path = os.path.join(tmp_path, "old.keras")
    model.save(path)
    pruned = prune_low_magnitude(model)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(
            "assets/layers/recipe_holder/tfcompress_recipe.json",
            json.dumps({"format": 2, "wrappers": wrapper_recipe(pruned)}),
        )
    with pytest.raises(
        ValueError, match=r"earlier tfcompress.*tfcompress_recipe.json.*save_weights"
    ):
        load_model(path)


def test_unregistered_class_missing_at_load_says_how_to_fix(tmp_path):
    pruned = prune_low_magnitude(
        testing.net(), pruning_schedule=ConstantSparsity(0.5, begin_step=0, frequency=1)
    )
    path = str(tmp_path / "net.keras")
    pruned.save(path)
    with pytest.raises(
        ValueError,
        match=r"compressed `Net`.*register_keras_serializable.*custom_objects=\{'Net': Net\}",
    ):
        load_model(path)
    restored = load_model(path, custom_objects={"Net": testing.Net, "NetBlock": testing.NetBlock})
    x, _ = testing.net_data(4)
    np.testing.assert_allclose(restored(x), pruned(x), atol=1e-6)


def _technique_files(tmp_path):
    """`{name: (path, inputs, outputs)}`: one saved model per technique subpackage."""
    from tests.models import tiny_llama
    from tfcompress.low_rank import factorize
    from tfcompress.models import llama3
    from tfcompress.quantization import quantize_model

    keras.utils.set_random_seed(0)
    dense_inputs = np.random.default_rng(0).normal(size=(2, 16)).astype("float32")
    pruned = prune_low_magnitude(
        testing.functional_dense(), ConstantSparsity(0.5, begin_step=0, frequency=1)
    )
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    quantized = quantize_model(testing.functional_dense())
    quantized(dense_inputs, training=True)
    backbone = llama3.Llama3Backbone(
        vocabulary_size=len(tiny_llama.vocabulary()), dtype="float32", **tiny_llama.CONFIG
    )
    token_inputs = {
        "token_ids": np.array([[5, 9, 2, 7]], "int32"),
        "padding_mask": np.ones((1, 4), "int32"),
    }
    models = {
        "sparsity": (pruned, dense_inputs),
        "quantization": (quantized, dense_inputs),
        "low_rank": (factorize(testing.functional_dense(), rank=2), dense_inputs),
        "models": (backbone, token_inputs),
    }
    files = {}
    for name, (model, inputs) in models.items():
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        np.savez(str(tmp_path / f"{name}.npz"), **_as_dict(inputs))
        files[name] = (path, testing.outputs_numpy(model(inputs))[0])
    return files


def _as_dict(inputs):
    return inputs if isinstance(inputs, dict) else {"x": inputs}


def test_only_tfcompress_saving_imported_loads_every_technique(tmp_path):
    files = _technique_files(tmp_path)
    out = testing.run_python(f"""
import json, sys
import numpy as np
import tfcompress.saving

files = { ({name: path for name, (path, _) in files.items()})!r}
result = {{"models_before": "tfcompress.models" in sys.modules}}
for name, path in files.items():
    model = tfcompress.saving.load_model(path)
    inputs = dict(np.load(path.replace(".keras", ".npz")))
    output = model(inputs.get("x", inputs))
    result[name] = [type(model).__name__, np.asarray(output).tolist()]
print(json.dumps(result))
""")
    result = json.loads(out.strip().splitlines()[-1])
    # keras-hub's import is paid only for a file that needs it.
    assert result.pop("models_before") is False
    assert result["models"][0] == "Llama3Backbone"
    for name, (_, expected) in files.items():
        np.testing.assert_allclose(np.asarray(result[name][1]), expected, atol=1e-5, err_msg=name)


def test_saving_names_no_technique():
    import tfcompress.saving

    techniques = ("sparsity", "quantization", "low_rank", "distillation", "models")
    directory = os.path.dirname(tfcompress.saving.__file__)
    for filename in sorted(os.listdir(directory)):
        if filename.endswith(".py"):
            with open(os.path.join(directory, filename)) as file:
                source = file.read()
            for technique in techniques:
                assert f"tfcompress.{technique}" not in source, (filename, technique)
