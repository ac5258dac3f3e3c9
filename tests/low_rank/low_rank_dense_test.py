import keras
import numpy as np
import pytest

from tfcompress.low_rank import LowRankDense
from tfcompress.low_rank._factors import Spectrum

import testing


def _dense(units=12, inputs=20, activation="relu"):
    layer = keras.layers.Dense(units, activation=activation, bias_initializer="random_normal")
    layer.build((None, inputs))
    return layer


def test_full_rank_reproduces_outputs():
    dense = _dense()
    first, second = Spectrum(dense.kernel.numpy()).factors(12)
    low = LowRankDense.from_layer(dense, first, second)
    x = np.random.default_rng(0).normal(size=(5, 20)).astype("float32")
    np.testing.assert_allclose(low(x), dense(x), atol=1e-5)
    assert low.name == dense.name
    assert low.first.kernel.shape == (20, 12) and low.second.kernel.shape == (12, 12)


def test_config_round_trip_and_keras_file(tmp_path):
    dense = _dense()
    first, second = Spectrum(dense.kernel.numpy()).factors(4)
    low = LowRankDense.from_layer(dense, first, second, weight_error=0.5)
    config = low.get_config()
    again = LowRankDense.from_config(config)
    assert again.get_config() == config
    model = keras.Sequential([keras.Input((20,)), low])
    restored = testing.run_model_saving_test(model, np.ones((2, 20), "float32"), tmp_path)
    assert restored.layers[0].rank == 4 and restored.layers[0].weight_error == 0.5


def test_trains_both_factors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 20)).astype("float32")
    y = x @ rng.normal(size=(20, 12)).astype("float32")
    model = keras.Sequential([keras.Input((20,)), LowRankDense(12, rank=12)])
    model.compile(keras.optimizers.Adam(0.05), "mse")
    before = [w.numpy().copy() for w in model.weights]
    history = model.fit(x, y, epochs=30, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]
    assert all(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))


def test_rank_must_be_positive_int():
    with pytest.raises(ValueError, match=r"`rank` must be an int >= 1. Received: rank=0"):
        LowRankDense(4, rank=0)
