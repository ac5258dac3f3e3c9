import keras
import numpy as np
import pytest

from tfcompress.core.layer_tree import find_layer
from tfcompress.core.swap import swap_layer
from tfcompress.sparsity import PruneLowMagnitude

import testing


def test_swaps_attribute_without_recording():
    model = testing.subclassed()
    ref = find_layer(model, "block/inner")
    new = keras.layers.Dense(8, activation="relu", name="inner")
    new.build((None, 8))
    new.set_weights(ref.layer.get_weights())
    swap_layer(ref.parent, ref.layer, new)
    assert ref.parent.inner is new
    assert type(model) is testing.Subclassed  # no recipe attached
    assert model.weights[2] is new.kernel


def test_functional_graph_wrapper():
    model = testing.functional_dense()
    inputs = testing.inputs_for(model)
    expected = model(inputs)
    old = model.get_layer("dense_2")
    wrapper = PruneLowMagnitude(old)
    wrapper.build((None, 16))
    swap_layer(model, old, wrapper)
    assert model.get_layer("prune_low_magnitude_dense_2") is wrapper
    testing.assert_outputs_close(expected, model(inputs))


def test_not_a_direct_sublayer():
    model = testing.subclassed()
    with pytest.raises(ValueError, match="'inner' is not a direct sublayer of 'subclassed'"):
        swap_layer(model, model.block.inner, keras.layers.Dense(8))
    assert np.all(np.isfinite(model(np.ones((1, 6), "float32"))))
