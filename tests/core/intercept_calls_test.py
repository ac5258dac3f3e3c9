import numpy as np
import pytest

from tfcompress.core import find_layer, intercept_calls

import testing


def test_sees_inputs_and_outputs_of_a_subclassed_models_layers():
    net = testing.TwoDense()
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    expected = net(x)
    seen = {}
    with intercept_calls([net.hidden, net.head], lambda l, i, o: seen.setdefault(l.name, (i, o))):
        out = net(x)
    np.testing.assert_allclose(out, expected)
    np.testing.assert_allclose(seen[net.hidden.name][0], x)
    np.testing.assert_allclose(seen[net.head.name][0], seen[net.hidden.name][1])
    np.testing.assert_allclose(seen[net.head.name][1], expected)
    assert "call" not in vars(net.hidden) and "call" not in vars(net.head)


def test_reaches_einsum_dense_inside_a_keras_hub_block():
    pytest.importorskip("keras_hub")
    backbone = testing.bert_backbone()
    query = find_layer(backbone, "transformer_layer_0/self_attention_layer/query").layer
    shapes = []
    with intercept_calls([query], lambda l, i, o: shapes.append((tuple(i.shape), tuple(o.shape)))):
        backbone(
            {
                "token_ids": np.ones((2, 8), "int32"),
                "segment_ids": np.zeros((2, 8), "int32"),
                "padding_mask": np.ones((2, 8), "int32"),
            }
        )
    assert shapes == [((2, 8, 8), (2, 8, 2, 4))]


def test_restores_call_after_an_error():
    net = testing.TwoDense()
    net(np.zeros((1, 5), "float32"))

    def fail(layer, inputs, outputs):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        with intercept_calls([net.hidden], fail):
            net(np.zeros((1, 5), "float32"))
    assert "call" not in vars(net.hidden)
    net(np.zeros((1, 5), "float32"))


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="`hook` must be callable"):
        with intercept_calls([], None):
            pass
    with pytest.raises(TypeError, match="`layers` must hold Keras layers; received str"):
        with intercept_calls(["dense"], print):
            pass
