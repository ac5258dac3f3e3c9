import keras
import pytest

from tfcompress.quantization import (
    DefaultQuantizeConfig,
    LastValueQuantizer,
    MovingAverageQuantizer,
)


def test_round_trip_and_quantizers():
    config = DefaultQuantizeConfig(
        ["kernel"], weight_bits=4, weight_per_axis=True, activation_bits=16
    )
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(config))
    assert restored.get_config() == config.get_config()
    layer = keras.layers.Dense(3)
    layer.build((None, 2))
    [(variable, weight_q)] = config.get_weights_and_quantizers(layer)
    assert variable is layer.kernel
    assert weight_q == LastValueQuantizer(4, True, symmetric=True, narrow_range=True)
    [output_q] = config.get_output_quantizers(layer)
    assert output_q == MovingAverageQuantizer(16, symmetric=True, narrow_range=True)
    assert DefaultQuantizeConfig().get_output_quantizers(layer)[0].symmetric is False
    assert DefaultQuantizeConfig(quantize_output=False).get_output_quantizers(layer) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_bits": 9}, r"`weight_bits` must be an integer from 2 to 8.*weight_bits=9"),
        ({"weight_bits": 1}, r"weight_bits=1"),
        ({"activation_bits": 4}, r"`activation_bits` must be 8 \(int8\) or 16.*activation_bits=4"),
    ],
)
def test_bits_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DefaultQuantizeConfig(**kwargs)
