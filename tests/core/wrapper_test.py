import keras
import numpy as np
import pytest

from tfcompress.core.wrapper import CompressionWrapper, build_shape_of


class _Scale(CompressionWrapper):
    """Multiplies the kernel by a learned scalar (a minimal subclass)."""

    def build_wrapper(self):
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

    def substitutions(self, training):
        return [(self.layer.kernel, self.layer.kernel * self.scale)]


def test_subclass_runs_inner_layer_with_substituted_kernel():
    dense = keras.layers.Dense(2, use_bias=False, kernel_initializer="ones")
    wrapper = _Scale(dense)
    x = np.ones((1, 3), "float32")
    np.testing.assert_allclose(wrapper(x).numpy(), [[3.0, 3.0]])
    wrapper.scale.assign(2.0)
    np.testing.assert_allclose(wrapper(x).numpy(), [[6.0, 6.0]])
    assert wrapper.dtype_policy.name == dense.dtype_policy.name


def test_training_and_mask_reach_the_inner_layer():
    dropout = keras.layers.Dropout(0.99)
    seen = {}

    class Spy(keras.layers.Layer):
        def call(self, inputs, training=None, mask=None):
            seen.update(training=training, mask=mask)
            return inputs

    class Plain(CompressionWrapper):
        pass

    Plain(Spy())(np.ones((1, 2)), training=True, mask=np.ones((1,), bool))
    assert seen["training"] is True and seen["mask"] is not None
    out = Plain(dropout)(np.ones((1, 100), "float32"), training=True)
    assert float(np.mean(out.numpy() == 0)) > 0.5


def test_keras_mask_passes_through():
    inputs = keras.Input((None,), dtype="int32")
    embedded = keras.layers.Embedding(10, 3, mask_zero=True)(inputs)
    wrapped = _Scale(keras.layers.Dense(3))(embedded)
    assert wrapped._keras_mask is not None
    outputs = keras.layers.LSTM(2)(wrapped)
    model = keras.Model(inputs, outputs)
    padded = model(np.array([[1, 2, 0, 0]], "int32")).numpy()
    short = model(np.array([[1, 2, 0, 0]], "int32")[:, :2]).numpy()
    np.testing.assert_allclose(padded, short, atol=1e-6)


def test_build_shape_of():
    dense = keras.layers.Dense(2)
    assert build_shape_of(dense) is None
    dense.build((None, 5))
    assert tuple(build_shape_of(dense)) == (None, 5)


def test_refuses_tf_keras_layer():
    class FakeLayer:
        pass

    FakeLayer.__module__ = "tf_keras.src.layers.core.dense"
    with pytest.raises(TypeError, match="`layer` must be a Keras 3 object"):
        _Scale(FakeLayer())
