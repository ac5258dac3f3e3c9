import keras
import numpy as np
import pytest

from tfcompress.sparsity import ConstantSparsity, PrunableLayer, prune_low_magnitude
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers

import testing


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class ScaledDense(keras.layers.Layer, PrunableLayer):
    """A user layer with two weights; only `w` is prunable."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1], 8))
        self.scale = self.add_weight(name="scale", shape=(8,), initializer="ones")

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.w) * self.scale

    def get_prunable_weights(self):
        return [self.w]


def _model():
    inputs = keras.Input((16,))
    hidden = ScaledDense(name="scaled")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(hidden))


def test_user_layer_is_pruned_and_saved(tmp_path):
    pruned = prune_low_magnitude(_model(), ConstantSparsity(0.5, 0))
    wrapper = next(w for w in pruning_wrappers(pruned) if w.layer.name == "scaled")
    wrapper.update_masks()
    assert np.mean(wrapper.layer.w.numpy() == 0) == 0.5
    assert np.all(wrapper.layer.scale.numpy() == 1.0)
    restored = testing.run_model_saving_test(pruned, np.ones((2, 16), "float32"), tmp_path)
    assert np.mean(restored.get_layer("prune_low_magnitude_scaled").layer.w.numpy() == 0) == 0.5


def test_user_layer_without_interface_is_skipped_and_reported():
    class Plain(keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(input_shape[-1], 4))

        def call(self, inputs):
            return keras.ops.matmul(inputs, self.w)

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(Plain(name="plain")(inputs)))
    pruned = prune_low_magnitude(model, inplace=True)
    assert pruned.tfcompress_skipped == ["plain"]
    with pytest.raises(ValueError, match="PrunableLayer"):
        prune_low_magnitude(model.get_layer("plain"))


def test_interface_is_abstract():
    class Incomplete(keras.layers.Layer, PrunableLayer):
        pass

    with pytest.raises(TypeError, match="get_prunable_weights"):
        Incomplete()
