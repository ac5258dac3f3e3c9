"""One suite over every quantizer, plus what makes each one different."""

import keras
import numpy as np
import pytest
from keras import ops

from tfcompress.quantization import AllValuesQuantizer, LastValueQuantizer, MovingAverageQuantizer

QUANTIZERS = [LastValueQuantizer, MovingAverageQuantizer, AllValuesQuantizer]


def _built(quantizer, shape=(4, 3)):
    holder = keras.layers.Layer()
    return holder, quantizer.build(shape, "w", holder)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_config_round_trip(cls):
    quantizer = cls(num_bits=4, per_axis=True, symmetric=True, narrow_range=True)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(quantizer))
    assert type(restored) is cls and restored.get_config() == quantizer.get_config()


@pytest.mark.parametrize("cls", QUANTIZERS)
@pytest.mark.parametrize("num_bits", [2, 4, 8])
def test_output_lies_on_the_grid(cls, num_bits):
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    quantizer = cls(num_bits=num_bits, symmetric=True, narrow_range=True)
    _, weights = _built(quantizer)
    y = ops.convert_to_numpy(quantizer(x, True, weights))
    bound = np.abs(x).max()
    step = 2 * bound / (2**num_bits - 2)
    np.testing.assert_allclose(y / step, np.round(y / step), atol=1e-3)
    assert len(np.unique(y)) <= 2**num_bits - 1
    assert np.abs(y - x).max() <= step / 2 + 1e-5


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_per_axis_keeps_one_range_per_channel(cls):
    x = np.array([[1.0, 100.0], [-1.0, -50.0]], "float32")
    quantizer = cls(per_axis=True, symmetric=True, narrow_range=True)
    _, weights = _built(quantizer, x.shape)
    y = ops.convert_to_numpy(quantizer(x, True, weights))
    np.testing.assert_allclose(ops.convert_to_numpy(weights["max_var"]), [1.0, 100.0])
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1 / 127)


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_gradient_is_straight_through_inside_the_range(cls):
    import tensorflow as tf

    quantizer = cls()
    _, weights = _built(quantizer, (3,))
    x = tf.Variable([0.5, -0.5, 1.0])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantizer(x, True, weights) * [1.0, 2.0, 3.0])
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), [1.0, 2.0, 3.0])


@pytest.mark.parametrize("cls", QUANTIZERS)
def test_inference_does_not_update_the_range(cls):
    quantizer = cls()
    _, weights = _built(quantizer, (2,))
    quantizer(np.array([1.0, 2.0], "float32"), False, weights)
    assert float(weights["max_var"]) == 6.0


def test_range_updates_differ_by_quantizer():
    first, second = np.array([0.0, 4.0], "float32"), np.array([0.0, 2.0], "float32")
    expected = {
        LastValueQuantizer: 2.0,
        AllValuesQuantizer: 4.0,
        MovingAverageQuantizer: 4.0 * 0.5 + 2.0 * 0.5,
    }
    for cls, value in expected.items():
        quantizer = cls(ema_decay=0.5) if cls is MovingAverageQuantizer else cls()
        _, weights = _built(quantizer, (2,))
        quantizer(first, True, weights)
        quantizer(second, True, weights)
        assert float(weights["max_var"]) == pytest.approx(value), cls.__name__


@pytest.mark.parametrize("bits", [1, 17, 8.0, True])
def test_bad_num_bits(bits):
    with pytest.raises(ValueError, match=r"`num_bits` must be an integer in \[2, 16\].*num_bits="):
        LastValueQuantizer(num_bits=bits)


def test_bad_ema_decay():
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        MovingAverageQuantizer(ema_decay=1.5)
