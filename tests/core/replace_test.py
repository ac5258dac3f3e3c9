import functools

import keras
import numpy as np
import pytest

import tfcompress
import tfcompress.saving
import tfcompress.sparsity
from tfcompress.core.layer_tree import find_layer
from tfcompress.core.recipe import has_recipe
from tfcompress.core.replace import replace_layer
from tfcompress.sparsity import PruneLowMagnitude

import testing


def test_functional_graph_keeps_config_and_keras_round_trip(tmp_path):
    model = testing.functional_dense()
    inputs = testing.inputs_for(model)
    expected = model(inputs)
    old = model.get_layer("dense_1")
    wrapper = PruneLowMagnitude(old)
    wrapper.build((None, 16))
    replace_layer(model, old, wrapper)

    assert model.get_layer("prune_low_magnitude_dense_1") is wrapper
    assert old not in model.layers
    testing.assert_outputs_close(expected, model(inputs))
    config = model.get_config()
    assert "prune_low_magnitude_dense_1" in str(config)
    rebuilt = keras.Model.from_config(config)
    assert isinstance(rebuilt.get_layer("prune_low_magnitude_dense_1"), PruneLowMagnitude)
    restored = testing.run_model_saving_test(model, inputs, tmp_path)
    testing.assert_same_weights(model, restored)


def test_attribute_of_keras_hub_block():
    model = testing.bert_backbone()
    inputs = testing.token_inputs()
    expected = model(inputs)
    ref = find_layer(model, "transformer_layer_0/self_attention_layer/query")
    wrapper = PruneLowMagnitude(ref.layer)
    wrapper.build((None, testing.SEQ, 8))
    replace_layer(ref.parent, ref.layer, wrapper)
    assert ref.parent._query_dense is wrapper
    testing.assert_outputs_close(expected, model(inputs))
    assert sum(w is wrapper.masks[0] for w in model.weights) == 1
    ref = find_layer(model, "transformer_layer_0/feedforward_intermediate_dense")
    wrapper = PruneLowMagnitude(ref.layer)
    wrapper.build((None, testing.SEQ, 8))
    replace_layer(ref.parent, ref.layer, wrapper)
    wrapper.update_masks(0.9)  # the model now computes with the masked kernel
    changed = model(inputs)["sequence_output"]
    assert not np.allclose(expected["sequence_output"], changed, atol=1e-3)


def test_sequential_layer_stack():
    model = testing.sequential_cnn()
    old = model.get_layer("head")
    wrapper = PruneLowMagnitude(old)
    wrapper.build((None, 8))
    replace_layer(model, old, wrapper)
    assert model.layers[-1] is wrapper
    assert model(np.ones((1, 8, 8, 3), "float32")).shape == (1, 4)


def test_not_a_sublayer():
    with pytest.raises(ValueError, match="'stray' is not a direct sublayer of 'mlp'"):
        replace_layer(
            testing.functional_dense(), keras.layers.Dense(1, name="stray"), keras.layers.Dense(1)
        )


def _narrow_dense(old, units, input_dim, keep_in=None, keep_out=None, name=None):
    """A Dense like `old` with `units` outputs, weights sliced from `old`."""
    config = old.get_config()
    config.update(units=units, name=name or old.name)
    new = keras.layers.Dense.from_config(config)
    new.build((None, None, input_dim))
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in (old.kernel, old.bias))
    if keep_in is not None:
        kernel = kernel[keep_in]
    if keep_out is not None:
        kernel, bias = kernel[:, keep_out], bias[keep_out]
    new.set_weights([kernel, bias])
    return new


def _zero_hidden_units(old_in, old_out, keep):
    """Zero the intermediate units a narrower block drops, so outputs match."""
    drop = np.setdiff1d(np.arange(old_in.units), keep)
    kernel = keras.ops.convert_to_numpy(old_in.kernel).copy()
    bias = keras.ops.convert_to_numpy(old_in.bias).copy()
    kernel[:, drop], bias[drop] = 0.0, -1e4  # gelu(-1e4) == 0
    old_in.set_weights([kernel, bias])
    del old_out


def test_bert_block_narrower_feed_forward_and_fewer_heads(tmp_path):
    model = testing.bert_backbone(num_layers=2)
    inputs = testing.token_inputs()
    block = "transformer_layer_1"
    wide_in = find_layer(model, f"{block}/feedforward_intermediate_dense").layer
    wide_out = find_layer(model, f"{block}/feedforward_output_dense").layer
    keep = np.array([0, 2, 3, 5, 8, 9, 12, 15])
    _zero_hidden_units(wide_in, wide_out, keep)
    expected = testing.outputs_numpy(model(inputs))

    narrow_in = _narrow_dense(wide_in, len(keep), 8, keep_out=keep)
    narrow_out = _narrow_dense(wide_out, 8, len(keep), keep_in=keep)
    assert replace_layer(model, f"{block}/feedforward_intermediate_dense", narrow_in) is model
    replace_layer(model, wide_out, narrow_out)
    testing.assert_outputs_close(expected, model(inputs), atol=1e-5)

    # One head of width 4 instead of two: a different attention, new weights.
    attention = keras.layers.MultiHeadAttention(num_heads=1, key_dim=4, name="self_attention_layer")
    attention.build((None, testing.SEQ, 8), (None, testing.SEQ, 8))
    replace_layer(model, f"{block}/self_attention_layer", attention)
    block_layer = find_layer(model, block).layer
    assert block_layer._self_attention_layer is attention
    assert block_layer._feedforward_intermediate_dense is narrow_in
    assert attention._query_dense.kernel.shape == (8, 1, 4)
    changed = testing.outputs_numpy(model(inputs))
    assert not np.allclose(expected[0], changed[0], atol=1e-3)
    assert model.count_params() < testing.bert_backbone(num_layers=2).count_params()

    for loader in (keras.saving.load_model, tfcompress.saving.load_model):
        restored = testing.run_model_saving_test(model, inputs, tmp_path, loader=loader)
        testing.assert_keeps_class(restored, model)
        testing.assert_same_weights(model, restored)
        restored_block = find_layer(restored, block).layer
        assert restored_block._feedforward_intermediate_dense.units == len(keep)
        assert restored_block._self_attention_layer.num_heads == 1
        assert find_layer(restored, "transformer_layer_0/self_attention_layer").layer.num_heads == 2
    copy = tfcompress.core.copy_model(model)
    testing.assert_keeps_class(copy, model)
    testing.assert_outputs_close(model(inputs), copy(inputs))


def test_unregistered_subclassed_model_round_trips(tmp_path):
    model = testing.net()
    inputs, _ = testing.net_data(4)
    block = model.blocks[1]
    narrow = _narrow_dense(block.expand, 6, 8, keep_out=np.arange(6))
    narrow_project = _narrow_dense(block.project, 8, 6, keep_in=np.arange(6))
    replace_layer(model, block.expand, narrow)
    replace_layer(model, block.project, narrow_project)
    assert model.blocks[1].expand is narrow
    outputs = model(inputs)
    assert model.count_params() < testing.net().count_params()

    # An unregistered class loads the way Keras loads any: named in custom_objects.
    classes = {"Net": testing.Net, "NetBlock": testing.NetBlock}
    for loader in (keras.saving.load_model, tfcompress.saving.load_model):
        restored = testing.run_model_saving_test(
            model, inputs, tmp_path, loader=functools.partial(loader, custom_objects=classes)
        )
    testing.assert_keeps_class(restored, model)
    assert restored.blocks[1].expand.units == 6 and restored.blocks[0].expand.units == 16
    testing.assert_outputs_close(outputs, restored(inputs))
    copy = tfcompress.core.copy_model(model)
    testing.assert_outputs_close(outputs, copy(inputs))


def test_replaced_layer_then_wrapped_round_trips(tmp_path):
    model = testing.subclassed()
    inputs = testing.inputs_for(model)
    tanh = keras.layers.Dense(8, activation="tanh", name="inner")
    tanh.build((None, 8))
    replace_layer(model, "block/inner", tanh)
    pruned = tfcompress.sparsity.prune_low_magnitude(
        model, tfcompress.sparsity.ConstantSparsity(0.5, 0)
    )
    restored = testing.run_model_saving_test(pruned, inputs, tmp_path)
    assert restored.block.inner.layer.get_config()["activation"] == "tanh"
    assert isinstance(restored.block.inner, tfcompress.sparsity.PruneLowMagnitude)


def test_block_replaced_by_a_sequential(tmp_path):
    model = testing.subclassed()
    inputs = testing.inputs_for(model)
    two = keras.Sequential(
        [keras.layers.Dense(3, use_bias=False), keras.layers.Dense(8, activation="relu")],
        name="low_rank_inner",
    )
    two.build((None, 8))
    replace_layer(model, "block/inner", two)
    assert "block/low_rank_inner" in [ref.path for ref in tfcompress.core.walk_layers(model)]
    restored = testing.run_model_saving_test(model, inputs, tmp_path)
    assert isinstance(restored.block.inner, keras.Sequential)
    assert len(restored.block.inner.layers) == 2


def test_plain_functional_needs_no_recipe(tmp_path):
    model = testing.functional_dense()
    inputs = testing.inputs_for(model)
    new = keras.layers.Dense(4, name="logits_small")
    new.build((None, 32))
    replace_layer(model, "logits", new)
    assert type(model) is keras.Model or type(model).__name__ == "Functional"
    assert not has_recipe(model)
    restored = testing.run_model_saving_test(model, inputs, tmp_path)
    assert restored.get_layer("logits_small").units == 4


def test_unbuilt_new_layer_is_built_with_old_shapes():
    model = testing.subclassed()
    new = keras.layers.Dense(8, name="outer")
    replace_layer(model, "block/outer", new)
    assert new.built and new.kernel.shape == (8, 8)
    assert model(np.ones((2, 6), "float32")).shape == (2, 3)


def test_errors_name_the_argument():
    model = testing.subclassed()
    with pytest.raises(KeyError, match="No layer at path 'block/nope'"):
        replace_layer(model, "block/nope", keras.layers.Dense(8))
    with pytest.raises(TypeError, match="`new_layer` must be a Keras 3"):
        replace_layer(model, "block/outer", "dense")
    with pytest.raises(TypeError, match="`model` must be the `keras.Model`"):
        replace_layer(model.block, model.block.outer, keras.layers.Dense(8))
    with pytest.raises(ValueError, match="is the layer at 'block/outer' itself"):
        replace_layer(model, "block/outer", model.block.outer)
    unbuildable = keras.layers.MultiHeadAttention(1, 2)
    with pytest.raises(ValueError, match="could not be built with the input shapes"):
        replace_layer(model, "block/outer", unbuildable)
    assert isinstance(model.block.outer, keras.layers.Dense) and not has_recipe(model)


def test_transform_layers_records_replacements(tmp_path):
    model = testing.subclassed()
    inputs = testing.inputs_for(model)

    def to_tanh(ref):
        if ref.path == "block/outer":
            new = keras.layers.Dense(8, activation="tanh", name="outer")
            new.build((None, 8))
            return new
        return None

    new, replaced = tfcompress.core.transform_layers(model, to_tanh)
    assert [ref.path for ref in replaced] == ["block/outer"] and has_recipe(new)
    assert model.block.outer.get_config()["activation"] == "linear"
    restored = testing.run_model_saving_test(new, inputs, tmp_path)
    assert restored.block.outer.get_config()["activation"] == "tanh"
