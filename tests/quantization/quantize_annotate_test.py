import keras
import numpy as np
import pytest

import tfcompress.quantization as tq

import testing


def test_annotated_layer_computes_the_same():
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    annotated = tq.quantize_annotate_layer(layer)
    x = np.ones((2, 4), "float32")
    np.testing.assert_array_equal(annotated(x).numpy(), layer(x).numpy())
    assert annotated.name == layer.name


def test_quantize_apply_quantizes_only_annotated_layers():
    model = keras.Sequential(
        [
            keras.Input((4,)),
            tq.quantize_annotate_layer(keras.layers.Dense(8, name="first")),
            keras.layers.Dense(2, name="second"),
        ]
    )
    qat = tq.quantize_apply(model, quantized_layer_name_prefix="q_")
    first, second = qat.layers
    assert isinstance(first, tq.QuantizeWrapper) and first.name == "q_first"
    assert type(second) is keras.layers.Dense


def test_annotate_model_then_apply_equals_quantize_model():
    model = testing.functional_dense()
    annotated = tq.quantize_annotate_model(model)
    assert sum(isinstance(l, tq.QuantizeAnnotate) for l in annotated.layers) == 4
    applied = tq.quantize_apply(annotated)
    direct = tq.quantize_model(model)
    assert [type(l).__name__ for l in applied.layers] == [type(l).__name__ for l in direct.layers]
    x = testing.inputs_for(model)
    testing.assert_outputs_close(applied(x), direct(x))


def test_custom_config_is_used():
    config = tq.DefaultQuantizeConfig(["kernel"], weight_bits=3, quantize_output=False)
    model = keras.Sequential(
        [keras.Input((4,)), tq.quantize_annotate_layer(keras.layers.Dense(8), config)]
    )
    wrapper = tq.quantize_apply(model).layers[0]
    assert wrapper.quantize_config.get_config() == config.get_config()


def test_unsupported_layer_without_config_is_an_error():
    with pytest.raises(
        ValueError, match=r"'gru' of type GRU is not supported.*Pass `quantize_config=`"
    ):
        tq.quantize_annotate_layer(keras.layers.GRU(4, name="gru"))
    with pytest.raises(TypeError, match=r"`to_annotate` must be a Keras 3"):
        tq.quantize_annotate_layer("dense")
    with pytest.raises(TypeError, match=r"`quantize_config` must be"):
        tq.quantize_annotate_layer(keras.layers.Dense(2), quantize_config={"bits": 8})


def test_apply_without_annotations_is_an_error():
    with pytest.raises(ValueError, match=r"has no layer marked for quantization.*quantize_model"):
        tq.quantize_apply(testing.functional_dense())
    with pytest.raises(TypeError, match=r"`scheme` must be"):
        tq.quantize_apply(tq.quantize_annotate_model(testing.functional_dense()), scheme="8bit")


def test_annotated_model_saves(tmp_path):
    annotated = tq.quantize_annotate_model(testing.functional_dense())
    testing.run_model_saving_test(annotated, testing.inputs_for(annotated), tmp_path)
