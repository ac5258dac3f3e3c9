import keras
import pytest

from tfcompress.core.layer_tree import find_layer
from tfcompress.sparsity.prune_registry import is_prunable, prunable_weights, reduction_axis

import testing


def _built(layer, shape):
    layer.build(shape)
    return layer


@pytest.mark.parametrize(
    "layer, shape, names, axis",
    [
        (keras.layers.Dense(4), (None, 8), ["kernel"], 0),
        (keras.layers.Conv1D(4, 3), (None, 8, 2), ["kernel"], 1),
        (keras.layers.Conv2D(4, 3), (None, 8, 8, 2), ["kernel"], 2),
        (keras.layers.Conv3D(4, 2), (None, 4, 4, 4, 2), ["kernel"], 3),
        (keras.layers.Conv2DTranspose(4, 3), (None, 8, 8, 2), ["kernel"], 3),
        (keras.layers.DepthwiseConv2D(3), (None, 8, 8, 2), ["kernel"], 2),
        (keras.layers.SeparableConv2D(4, 3), (None, 8, 8, 2), ["pointwise_kernel"], 2),
        (keras.layers.EinsumDense("abc,cd->abd", (None, 4)), (None, 3, 8), ["kernel"], 0),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, keras.layers.Layer) else None,
)
def test_supported_kernels_and_input_axis(layer, shape, names, axis):
    _built(layer, shape)
    weights = prunable_weights(layer)
    assert [w.name for w in weights] == names
    assert reduction_axis(layer, weights[0]) == axis


def test_never_biases_norms_or_embeddings_by_default():
    for layer, shape in [
        (keras.layers.LayerNormalization(), (None, 4)),
        (keras.layers.BatchNormalization(), (None, 4)),
        (keras.layers.Embedding(10, 4), (None,)),
    ]:
        _built(layer, shape)
        assert prunable_weights(layer) is None and not is_prunable(layer)
    embedding = _built(keras.layers.Embedding(10, 4), (None,))
    assert prunable_weights(embedding, prune_embeddings=True) == [embedding.embeddings]
    assert reduction_axis(embedding, embedding.embeddings) == 1


def test_keras_hub_attention_projections():
    model = testing.bert_backbone()
    output = find_layer(model, "transformer_layer_0/self_attention_layer/attention_output")
    assert reduction_axis(output.layer, output.layer.kernel) == 1  # (heads, dim, hidden)
    position = find_layer(model, "position_embedding").layer
    assert is_prunable(position, prune_embeddings=True)
    assert prunable_weights(position, True)[0].shape == (testing.SEQ, 8)


def test_unbuilt_layers_are_classified():
    assert is_prunable(keras.layers.Dense(3))
    assert not is_prunable(keras.layers.Dropout(0.1))
