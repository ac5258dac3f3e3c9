import json
import zipfile

import keras
import numpy as np
import pytest

from tfcompress.core.recipe import has_recipe, plain_class
from tfcompress.sparsity import (
    ConstantSparsity,
    PruneLowMagnitude,
    prune_low_magnitude,
    strip_pruning,
)
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers

import testing


def _pruned(factory):
    model = factory()
    pruned = prune_low_magnitude(model, ConstantSparsity(0.6, 0))
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks()
    return pruned


@pytest.mark.parametrize(
    "factory",
    [
        testing.sequential_cnn,
        testing.functional_dense,
        testing.subclassed,
        testing.nested,
        testing.bert_backbone,
    ],
    ids=lambda f: f.__name__,
)
def test_strip_keeps_class_outputs_and_zeros(factory, tmp_path):
    pruned = _pruned(factory)
    inputs = testing.inputs_for(pruned)
    stripped = strip_pruning(pruned)

    testing.assert_keeps_class(stripped, pruned)
    # Nothing is left to record: no recipe, no extra layer, the plain class.
    assert not has_recipe(stripped) and type(stripped) is plain_class(pruned)
    assert "tfcompress_recipe" not in [layer.name for layer in stripped.layers]
    assert not pruning_wrappers(stripped)
    assert not [w.path for w in stripped.weights if "mask" in w.path or "pruning_step" in w.path]
    assert not hasattr(stripped, "tfcompress_skipped")
    testing.assert_outputs_close(pruned(inputs), stripped(inputs))
    kernels = [w for w in stripped.weights if w.name in ("kernel", "pointwise_kernel")]
    assert len(kernels) == len(pruning_wrappers(pruned))
    for kernel in kernels:
        size = int(np.prod(kernel.shape))
        zeros = np.mean(keras.ops.convert_to_numpy(kernel) == 0)
        assert zeros == pytest.approx(round(0.6 * size) / size), kernel.path
    # A plain model again: Keras loads it without tfcompress.
    restored = testing.run_model_saving_test(
        stripped, inputs, tmp_path, loader=keras.saving.load_model
    )
    assert not pruning_wrappers(restored)
    # The pruned model is left as it was.
    assert pruning_wrappers(pruned)


def test_strip_inplace_and_single_wrapper():
    pruned = _pruned(testing.functional_dense)
    stripped = strip_pruning(pruned, inplace=True)
    assert stripped is pruned and not pruning_wrappers(pruned)
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    wrapper = PruneLowMagnitude(dense, ConstantSparsity(0.5, 0))
    wrapper.build((None, 4))
    wrapper.update_masks()
    dense.kernel.assign(np.ones((4, 3), "float32"))  # pruned weights revived
    assert strip_pruning(wrapper) is dense
    assert np.mean(dense.kernel.numpy() == 0) == 0.5


def test_strip_rejects_non_keras3():
    with pytest.raises(TypeError, match="must be a Keras 3"):
        strip_pruning("model")


@pytest.mark.parametrize("inplace", [False, True], ids=["copy", "inplace"])
def test_stripped_subclassed_model_carries_no_recipe(inplace, tmp_path):
    pruned = _pruned(testing.net)
    assert "tfcompress_recipe" not in [layer.name for layer in pruned.layers]
    stripped = strip_pruning(pruned, inplace=inplace)
    assert type(stripped) is testing.Net
    assert [type(layer) for layer in stripped.layers] == [
        testing.NetBlock,
        testing.NetBlock,
        keras.layers.Dense,
    ]
    path = str(tmp_path / "stripped.keras")
    stripped.save(path)
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    assert config["registered_name"] == "Net"
    assert "tfcompress_wrappers" not in config["config"]
