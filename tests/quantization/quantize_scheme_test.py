import keras
import pytest

from tfcompress.quantization import QuantizeScheme


def _built(layer, shape):
    layer.build(shape)
    return layer


def test_default_granularity_per_layer_type():
    scheme = QuantizeScheme()
    conv = scheme.config_for("c", _built(keras.layers.Conv2D(4, 3), (None, 8, 8, 2)))
    assert conv.weight_per_axis and conv.weight_axis == -1
    depthwise = scheme.config_for("d", _built(keras.layers.DepthwiseConv2D(3), (None, 8, 8, 2)))
    assert depthwise.weight_per_axis and depthwise.weight_axis == 2
    multiplier = scheme.config_for(
        "m", _built(keras.layers.DepthwiseConv2D(3, depth_multiplier=2), (None, 8, 8, 2))
    )
    assert not multiplier.weight_per_axis
    dense = scheme.config_for("x", _built(keras.layers.Dense(4), (None, 3)))
    assert not dense.weight_per_axis and dense.weight_attrs == ["kernel"]
    embedding = scheme.config_for("e", _built(keras.layers.Embedding(10, 4), (None, 3)))
    assert embedding.weight_attrs == ["embeddings"] and not embedding.quantize_output
    relu = scheme.config_for("r", keras.layers.ReLU())
    assert relu.weight_attrs == [] and relu.quantize_output


def test_passthrough_layers_get_no_config():
    scheme = QuantizeScheme()
    for layer in (keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dropout(0.1)):
        assert scheme.config_for("p", layer) is None


def test_layer_norm_computes_float_with_a_quantized_output():
    config = QuantizeScheme().config_for("n", keras.layers.LayerNormalization())
    assert config.weight_attrs == [] and config.quantize_output


def test_per_layer_overrides_by_name_or_path():
    scheme = QuantizeScheme(
        weight_bits=4, per_layer={"a/head": {"weight_bits": 8}, "mid": {"skip": True}}
    )
    head, mid = keras.layers.Dense(2, name="head"), keras.layers.Dense(2, name="mid")
    assert scheme.config_for("a/head", head).weight_bits == 8
    assert scheme.config_for("b/head", head).weight_bits == 4
    assert scheme.config_for("any/mid", mid) is None
    restored = QuantizeScheme.from_config(scheme.get_config())
    assert restored.get_config() == scheme.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_bits": 12}, r"`weight_bits` must be an integer from 2 to 8.*weight_bits=12"),
        ({"activation_bits": 32}, r"`activation_bits` must be 8.*activation_bits=32"),
        (
            {"per_layer": {"d": {"weight_bits": 1}}},
            r"`weight_bits` in per_layer\['d'\] must be .*weight_bits=1",
        ),
        ({"per_layer": {"d": {"bits": 4}}}, r"`per_layer\['d'\]` must be a dict with keys among"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizeScheme(**kwargs)
