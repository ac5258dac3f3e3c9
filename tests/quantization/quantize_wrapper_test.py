import keras
import numpy as np
import pytest
import tensorflow as tf

import testing
import tfcompress.quantization as tq


def _wrapped_dense(**kwargs):
    layer = keras.layers.Dense(4, activation="relu")
    layer.build((None, 3))
    wrapper = tq.QuantizeWrapper(layer, tq.DefaultQuantizeConfig(["kernel"]), **kwargs)
    wrapper.build((None, 3))
    return layer, wrapper


def test_kernel_reads_fake_quantized_and_output_is_quantized():
    layer, wrapper = _wrapped_dense()
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = wrapper(x, training=True).numpy()
    kernel = layer.kernel.numpy()
    step = np.abs(kernel).max() / 127
    q_kernel = np.round(kernel / step) * step
    expected = np.maximum(x @ q_kernel + layer.bias.numpy(), 0)
    out_step = expected.max() / 255
    np.testing.assert_allclose(y, expected, atol=out_step)
    assert len(np.unique(y)) <= 256
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)  # the float variable is untouched


def test_gradients_reach_the_float_kernel():
    layer, wrapper = _wrapped_dense()
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapper(x, training=True))
    grads = tape.gradient(loss, wrapper.trainable_variables)
    assert [v.path for v in wrapper.trainable_variables] == [layer.kernel.path, layer.bias.path]
    assert all(g is not None and np.abs(g.numpy()).sum() > 0 for g in grads)


def test_variables_are_not_duplicated():
    layer, wrapper = _wrapped_dense(input_quantizer=tq.MovingAverageQuantizer())
    paths = [v.path for v in wrapper.weights]
    assert len(paths) == len(set(paths)) == 2 + 3 * 2 + 2  # inner, input+output EMAs, kernel range


def test_preserve_sparsity_keeps_zeros_through_training():
    layer = keras.layers.Dense(8)
    layer.build((None, 8))
    kernel = layer.kernel.numpy()
    kernel[np.abs(kernel) < np.median(np.abs(kernel))] = 0.0
    layer.kernel.assign(kernel)
    model = keras.Sequential([keras.Input((8,)), layer])
    qat = tq.quantize_model(model, preserve_sparsity=True)
    qat.compile(keras.optimizers.SGD(0.1), "mse")
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    qat.fit(x, x, epochs=2, verbose=0)
    wrapper = qat.layers[0]
    [(variable, quantized)] = wrapper.substitutions(training=False)
    assert variable is wrapper.layer.kernel
    quantized = quantized.numpy()
    np.testing.assert_array_equal(quantized[kernel == 0], 0.0)
    assert np.count_nonzero(quantized) == np.count_nonzero(kernel)


def test_config_round_trip_and_keras_save(tmp_path):
    _, wrapper = _wrapped_dense(input_quantizer=tq.MovingAverageQuantizer(), preserve_sparsity=True)
    config = wrapper.get_config()
    assert {"layer", "quantize_config", "input_quantizer", "preserve_sparsity"} <= set(config)
    restored = tq.QuantizeWrapper.from_config(config)
    assert restored.preserve_sparsity and restored.input_quantizer == wrapper.input_quantizer
    model = keras.Sequential([keras.Input((3,)), wrapper])
    model(np.ones((2, 3), "float32"), training=True)  # move the ranges off their defaults
    testing.run_model_saving_test(model, np.ones((2, 3), "float32"), tmp_path)


def test_rejects_bad_arguments():
    layer = keras.layers.Dense(2)
    with pytest.raises(TypeError, match=r"`quantize_config` must be .*QuantizeConfig.*quantize_config='int8'"):
        tq.QuantizeWrapper(layer, "int8")
    with pytest.raises(TypeError, match=r"`input_quantizer` must be"):
        tq.QuantizeWrapper(layer, tq.DefaultQuantizeConfig(), input_quantizer=8)
