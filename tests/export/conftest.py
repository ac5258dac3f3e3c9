"""Small models for the export tests (seconds to convert on one CPU core)."""

import keras
import keras_hub
import numpy as np
import pytest


@pytest.fixture
def dense_model():
    """32 -> 64 -> 10 MLP; its first kernel has 2048 weights, above the 1024
    below which the converter leaves dynamic-range weights in float."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32,), name="features")
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


@pytest.fixture
def conv_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )


@pytest.fixture
def calibration_data():
    """`make(model, n=64)`: uniform [0, 1) inputs for a single-input model."""

    def make(model, n=64):
        shape = (n,) + tuple(model.inputs[0].shape[1:])
        return np.random.default_rng(1).random(shape, dtype=np.float32)

    return make


@pytest.fixture
def bert_backbone():
    keras.utils.set_random_seed(0)
    return keras_hub.models.BertBackbone(
        vocabulary_size=100,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=16,
    )


@pytest.fixture
def bert_inputs():
    """`make(n=16, seed=0)`: token ids, padding masks of random lengths, 2 segments."""

    def make(n=16, seed=0):
        rng = np.random.default_rng(seed)
        lengths = rng.integers(4, 17, size=n)
        positions = np.arange(16)[None, :]
        mask = (positions < lengths[:, None]).astype(np.int32)
        return {
            "token_ids": (rng.integers(1, 100, size=(n, 16)) * mask).astype(np.int32),
            "padding_mask": mask,
            "segment_ids": ((positions >= lengths[:, None] // 2) * mask).astype(np.int32),
        }

    return make
