import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import export, runtime
from tfcompress.export import converter, flatbuffer, wrap


class QuantizeDense(keras.layers.Layer):
    """Dense with fake-quantized input, kernel and output, as after QAT."""

    carries_learned_ranges = True  # how a user's own fake-quant layer says so to the export

    def __init__(self, units, input_range, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.input_range = input_range

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units))
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, x):
        fake_quant = keras.quantizers.fake_quant_with_min_max_vars
        x = fake_quant(x, -self.input_range, self.input_range, num_bits=8)
        kernel = fake_quant(self.kernel, -1.0, 1.0, num_bits=8, narrow_range=True)
        return fake_quant(keras.ops.matmul(x, kernel) + self.bias, -4.0, 4.0, num_bits=8)


def test_quantize_aware_models_become_int8_without_calibration_data():
    keras.utils.set_random_seed(0)
    # The second layer's input range is the first one's output range, as QAT
    # learns it; TFLite keeps one scale per tensor.
    model = keras.Sequential([keras.Input((8,)), QuantizeDense(16, 1.0), QuantizeDense(4, 4.0)])
    sample = np.random.default_rng(0).uniform(-1, 1, (16, 8)).astype(np.float32)
    result = export.to_tflite(model, target="int8", int8_io=True, sample=sample)
    loaded = runtime.load(result.tflite_bytes)
    assert set(loaded.tensor_dtypes().values()) == {"int8"}
    assert loaded.ops() == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    # One output step is 8/255; the fake-quant graph and the int8 kernels
    # round the same values, so they differ by at most a couple of steps.
    assert result.max_abs_error <= 2 * 8 / 255 + 1e-6


def _cumprod_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Lambda(lambda x: tf.math.cumprod(x, axis=-1)),
            keras.layers.Dense(2),
        ]
    )


def test_ops_without_builtin_need_allow_flex():
    wrapper, _ = wrap.functional_wrapper(_cumprod_model())
    with pytest.raises(ValueError, match="no TFLite builtin: Cumprod. Pass allow_flex=True"):
        converter.convert(wrapper, "float32")
    content = converter.convert(wrapper, "float32", allow_flex=True)
    assert flatbuffer.op_names(flatbuffer.read_model(content)) == [
        "FlexCumprod",
        "FULLY_CONNECTED",
    ]


def test_float16_keeps_float_io_and_halves_weights(dense_model):
    wrapper, _ = wrap.functional_wrapper(dense_model)
    model = flatbuffer.read_model(converter.convert(wrapper, "float16"))
    subgraph = model.subgraphs[0]
    kernels = [t for t in subgraph.tensors if flatbuffer.has_data(model, t) and len(t.shape) == 2]
    assert {flatbuffer.type_name(t) for t in kernels} == {"FLOAT16"}
    for index in list(subgraph.inputs) + list(subgraph.outputs):
        assert flatbuffer.type_name(subgraph.tensors[index]) == "FLOAT32"
