import keras
import numpy as np
import pytest

from tfcompress.export import arena, converter, flatbuffer, wrap


def _float32(model):
    return converter.convert(wrap.functional_wrapper(model)[0], "float32")


def test_chain_reuses_memory():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((100,))] + [keras.layers.Dense(100, activation="relu") for _ in range(6)]
    )
    content = _float32(model)
    lifetimes = arena.tensor_lifetimes(flatbuffer.read_model(content))
    # Input + 6 layer outputs, 400 bytes each (batch 1); the weights stay out.
    assert sorted(size for _, _, size in lifetimes.values()) == [400] * 7
    activations, temporary, persistent, peak = arena.estimate_arena_parts(content)
    # Only one layer's input and output are alive at a time.
    assert peak == 800
    assert activations == 800
    assert temporary < 800
    assert arena.estimate_arena_bytes(content) == (800 + persistent, 800)


def test_branches_keep_both_sides_alive():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    left = keras.layers.Dense(32)(inputs)
    right = keras.layers.Dense(16)(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([left, right]))
    size, _, _, peak = arena.estimate_arena_parts(_float32(model))
    # While the second branch runs, the input and the first branch's output
    # are still alive (the concat then holds 32 + 16 + 48 floats, less).
    assert peak == (64 + 32 + 16) * 4
    assert size >= peak
    assert size % arena.ALIGNMENT == 0


def test_estimate_accepts_a_path(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)])
    file = tmp_path / "m.tflite"
    file.write_bytes(_float32(model))
    assert arena.estimate_arena_parts(file)[::3] == (64, (10 + 3) * 4)
    assert arena.estimate_arena_bytes(file) == arena.estimate_arena_bytes(file.read_bytes())
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        arena.estimate_arena_bytes(np.zeros(4).tobytes())
