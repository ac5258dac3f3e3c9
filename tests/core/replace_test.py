
import keras
import numpy as np
import pytest

import testing
from tfcompress.core.layer_tree import find_layer
from tfcompress.core.replace import replace_layer
from tfcompress.sparsity import PruneLowMagnitude




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
        replace_layer(testing.functional_dense(), keras.layers.Dense(1, name="stray"),
                      keras.layers.Dense(1))
