import keras
import numpy as np
import pytest

import tfcompress.quantization as tq
from tfcompress.quantization import LayerOverride


def test_reads_and_compares_like_the_dict_of_its_set_fields():
    override = LayerOverride(quantize_output=False, input_outlier_channels=[9, 2, 2])
    assert override == {"quantize_output": False, "input_outlier_channels": [2, 9]}
    assert list(override) == ["quantize_output", "input_outlier_channels"]
    assert override["input_outlier_channels"] == [2, 9] and override.weight_bits is None
    assert override.get("skip") is None and "skip" not in override
    assert LayerOverride() == {} and not LayerOverride()
    assert LayerOverride(output_scale=[1.0, 3.0]) != {"output_scale": [1.0, 2.0]}


def test_config_round_trips_through_the_keras_registry():
    override = LayerOverride(
        weight_bits=4, skip=False, output_scale=np.array([1.0, 2.5], "float32")
    )
    config = override.get_config()
    assert set(config) == {
        "weight_bits",
        "activation_bits",
        "skip",
        "quantize_output",
        "quantize_input",
        "outlier_channels",
        "input_outlier_channels",
        "input_scale",
        "output_scale",
    }
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(override))
    assert isinstance(restored, LayerOverride) and restored == override
    assert restored.output_scale.dtype == np.float32


def test_scheme_converts_the_dict_form_and_keeps_overrides():
    given = LayerOverride(weight_bits=8)
    scheme = tq.QuantizeScheme(weight_bits=4, per_layer={"a": {"skip": True}, "b": given})
    assert isinstance(scheme.per_layer["a"], LayerOverride) and scheme.per_layer["a"].skip is True
    assert scheme.per_layer["b"] is given
    restored = tq.QuantizeScheme.from_config(scheme.get_config())
    assert restored.per_layer == scheme.per_layer


def test_quantize_model_takes_a_layer_override():
    x = keras.Input((3, 8))
    model = keras.Model(
        x, keras.layers.Dense(4, name="d")(keras.layers.Dense(8, name="skipped")(x))
    )
    qat = tq.quantize_model(
        model, per_layer={"skipped": LayerOverride(skip=True), "d": LayerOverride(weight_bits=4)}
    )
    assert not isinstance(qat.get_layer("skipped"), tq.QuantizeWrapper)
    assert qat.get_layer("quant_d").quantize_config.weight_bits == 4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"weight_bits": 9}, r"`weight_bits` must be an integer from 2 to 8.*weight_bits=9"),
        ({"activation_bits": 4}, r"`activation_bits` must be 8 .*activation_bits=4"),
        ({"skip": "yes"}, r"`skip` must be True, False or None. Received: skip='yes'"),
        ({"quantize_input": 1}, r"`quantize_input` must be True, False or None"),
        (
            {"outlier_channels": [1, -2]},
            r"`outlier_channels` must be a list of non-negative channel indices",
        ),
        ({"input_outlier_channels": 3}, r"`input_outlier_channels` must be a list"),
        (
            {"input_scale": [1.0, 0.0]},
            r"`input_scale` must be a 1-D vector of positive finite factors",
        ),
        (
            {"output_scale": [[1.0]]},
            r"`output_scale` must be a 1-D vector.*per flat output channel",
        ),
    ],
)
def test_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LayerOverride(**kwargs)


def test_dict_form_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"`skip` in per_layer\['d'\] must be True, False or None"):
        tq.QuantizeScheme(per_layer={"d": {"skip": "no"}})
    with pytest.raises(ValueError, match=r"`per_layer\['d'\]` must be a dict with keys among"):
        tq.QuantizeScheme(per_layer={"d": ["skip"]})
    with pytest.raises(AttributeError, match="has no field 'bits'"):
        LayerOverride().bits
