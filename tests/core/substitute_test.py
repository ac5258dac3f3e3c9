import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.core.substitute import substitute_variables
from tfcompress.core.wrapper import CompressionWrapper


def test_gradient_reaches_the_real_variable():
    dense = keras.layers.Dense(2, use_bias=False)
    dense.build((None, 3))
    dense.kernel.assign(np.ones((3, 2), "float32"))
    x = np.array([[1.0, 2.0, 3.0]], "float32")
    with tf.GradientTape() as tape:
        replaced = dense.kernel * 2.0
        with substitute_variables([(dense.kernel, replaced)]):
            y = dense(x)
        loss = tf.reduce_sum(y)
    np.testing.assert_allclose(y.numpy(), [[12.0, 12.0]])
    grad = tape.gradient(loss, dense.kernel)
    np.testing.assert_allclose(grad.numpy(), 2.0 * np.array([[1.0] * 2, [2.0] * 2, [3.0] * 2]))
    # Outside the block the variable reads as itself.
    np.testing.assert_allclose(dense(x).numpy(), [[6.0, 6.0]])


def test_keys_must_be_variables():
    dense = keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")
    dense.build((None, 2))
    with pytest.raises(TypeError, match="Received a key 'dense.*/kernel' of type str"):
        with substitute_variables({dense.kernel.path: np.zeros((2, 1), "float32")}):
            pass


def test_batch_norm_moving_statistics_updates_are_kept():
    bn = keras.layers.BatchNormalization(momentum=0.5)
    bn.build((None, 2))
    x = np.array([[2.0, 4.0], [4.0, 8.0]], "float32")
    with substitute_variables([(bn.gamma, bn.gamma * 1.0)], bn.variables):
        bn(x, training=True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), [1.5, 3.0])

    class Identity(CompressionWrapper):
        def substitutions(self, training):
            return [(self.layer.gamma, self.layer.gamma * 1.0)]

    other = keras.layers.BatchNormalization(momentum=0.5)
    wrapper = Identity(other)
    model = keras.Sequential([keras.Input((2,)), wrapper])
    model.compile("sgd", "mse")
    model.fit(x, x, batch_size=2, epochs=1, verbose=0)
    np.testing.assert_allclose(other.moving_mean.numpy(), [1.5, 3.0], rtol=1e-5)
