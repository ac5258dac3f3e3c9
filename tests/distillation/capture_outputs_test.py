"""capture_outputs: activations of nested layers, in eager and traced calls."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.core import find_layer
from tfcompress.distillation import capture_outputs

import testing


def test_records_a_nested_layer_of_a_subclassed_model_and_restores_call():
    model = testing.subclassed()
    inner = find_layer(model, "block/inner").layer
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    with capture_outputs([inner, model.norm]) as captured:
        model(x)
    expected = inner(model.embed(x))
    np.testing.assert_allclose(captured[inner], expected, atol=1e-6)
    assert captured[model.norm].shape == (3, 8)
    assert "call" not in vars(inner) and "call" not in vars(model.norm)


def test_records_traced_tensors_inside_tf_function():
    backbone = testing.gpt2_backbone(num_layers=2)
    block = find_layer(backbone, "transformer_layer_1").layer
    x = testing.token_inputs(batch=2, segments=False)

    @tf.function
    def hidden(inputs):
        with capture_outputs([block]) as captured:
            backbone(inputs)
        return captured[block]

    eager = keras.Model(backbone.inputs, block.output)(x)
    np.testing.assert_allclose(hidden(x), eager, atol=1e-5)


def test_restores_call_after_an_error_and_reports_run_counts():
    model = testing.subclassed()
    with pytest.raises(RuntimeError, match="boom"):
        with capture_outputs([model.head]):
            raise RuntimeError("boom")
    assert "call" not in vars(model.head)
    with capture_outputs([model.head]) as captured:
        pass
    with pytest.raises(ValueError, match="Layer 'head' ran 0 times in one forward pass"):
        captured[model.head]
