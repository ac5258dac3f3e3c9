import keras
import pytest

from tfcompress.core.layer_tree import child_layers, find_layer, walk_layers

import testing


def test_finds_einsum_dense_inside_mha_inside_transformer_encoder():
    model = testing.bert_backbone()
    ref = find_layer(model, "transformer_layer_0/self_attention_layer/query")
    assert isinstance(ref.layer, keras.layers.EinsumDense)
    assert isinstance(ref.parent, keras.layers.MultiHeadAttention)
    assert ref.depth == 3
    # The path is the prefix Keras gives the layer's variables.
    assert ref.layer.kernel.path == ref.path + "/kernel"
    paths = [r.path for r in walk_layers(model)]
    assert len(paths) == len(set(paths))
    assert paths.index("transformer_layer_0") < paths.index(ref.path)


def test_walks_sequential_functional_subclassed_and_nested():
    assert [r.path for r in walk_layers(testing.sequential_cnn())] == [
        "conv",
        "bn",
        "depthwise",
        "separable",
        "pool",
        "head",
    ]
    refs = {r.path: r for r in walk_layers(testing.nested())}
    assert {"inner_model/inner_dense", "block/inner", "block/outer", "head"} <= set(refs)
    assert refs["block/inner"].depth == 2
    sub = {r.path for r in walk_layers(testing.subclassed())}
    assert sub == {"embed", "block", "block/inner", "block/outer", "norm", "head"}


def test_descend_stops_at_chosen_layers():
    refs = walk_layers(testing.nested(), descend=lambda layer: layer.name != "block")
    paths = [r.path for r in refs]
    assert "block" in paths and "block/inner" not in paths


def test_shared_layer_listed_once():
    shared = keras.layers.Dense(4, name="shared")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, shared(shared(inputs)))
    assert [r.layer for r in walk_layers(model)] == [shared]
    assert child_layers(model) == [shared]


def test_find_layer_error_lists_close_paths():
    with pytest.raises(KeyError, match=r"No layer at path 'x/inner'.*'block/inner'"):
        find_layer(testing.nested(), "x/inner")
