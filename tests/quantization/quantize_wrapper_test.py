import keras
import numpy as np
import pytest
import tensorflow as tf

import tfcompress.quantization as tq
from tfcompress.quantization.flat_matmul import scatter_channels
from tfcompress.quantization.scale_math import scale_input

import testing


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
    with pytest.raises(
        TypeError, match=r"`quantize_config` must be .*QuantizeConfig.*quantize_config='int8'"
    ):
        tq.QuantizeWrapper(layer, "int8")
    with pytest.raises(TypeError, match=r"`input_quantizer` must be"):
        tq.QuantizeWrapper(layer, tq.DefaultQuantizeConfig(), input_quantizer=8)


@pytest.mark.parametrize(
    "make, shape, channels, match",
    [
        (lambda: keras.layers.Dense(4), (None, 3), [1], "rank > 2"),
        (lambda: keras.layers.Dense(4, activation="relu"), (None, 5, 3), [1], "has an activation"),
        (lambda: keras.layers.Dense(4), (None, 5, 3), [4], "has only 4 output channels"),
    ],
)
def test_outlier_channels_errors_name_the_layer_and_the_fix(make, shape, channels, match):
    layer = make()
    layer.build(shape)
    wrapper = tq.QuantizeWrapper(
        layer, tq.DefaultQuantizeConfig(["kernel"]), outlier_channels=channels
    )
    with pytest.raises(
        ValueError, match=rf"`outlier_channels` cannot be used on layer .*{match}.*Leave it out"
    ):
        wrapper.build(shape)


@pytest.mark.parametrize("channels", ["99", [1.5], [-1], [True]])
def test_outlier_channels_must_be_indices(channels):
    with pytest.raises(ValueError, match="must be a list of non-negative channel indices"):
        tq.QuantizeWrapper(
            keras.layers.Dense(2), tq.DefaultQuantizeConfig(), outlier_channels=channels
        )


def test_outlier_split_without_quantization_is_the_layer():
    """The splits only regroup the matmul: in float the parts add up exactly."""
    layer = keras.layers.EinsumDense("abc,cd->abd", (None, 6), bias_axes="d")
    layer.build((None, 5, 3))
    layer.bias.assign(np.arange(6, dtype="float32"))
    wrapper = tq.QuantizeWrapper(
        layer,
        tq.DefaultQuantizeConfig(["kernel"]),
        outlier_channels=[4, 1],
        input_outlier_channels=[2],
    )
    wrapper.build((None, 5, 3))
    assert wrapper.outlier_channels == (1, 4) and wrapper.input_outlier_channels == (2,)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    kernel, rows, split = wrapper.plan.kernel_parts()
    np.testing.assert_array_equal(np.asarray(kernel)[2], 0.0)  # the input-outlier row
    rest_kernel, rest_bias, outlier_kernel, outlier_bias = (np.asarray(t) for t in split)
    x2 = x.reshape(-1, 3)
    rest = x2 @ rest_kernel + rest_bias
    np.testing.assert_array_equal(rest[:, [1, 4]], 0.0)  # the outlier columns
    scattered = np.asarray(scatter_channels(x2 @ outlier_kernel + outlier_bias, [1, 4], 6))
    np.testing.assert_array_equal(scattered[:, [0, 2, 3, 5]], 0.0)
    joined = rest + scattered + x2[:, [2]] @ np.asarray(rows)
    np.testing.assert_allclose(joined.reshape(2, 5, 6), np.asarray(layer(x)), atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(wrapper(x, training=True)), np.asarray(layer(x)), atol=0.1
    )


def _smoothed_einsum(input_scale, input_quantizer=True, activation="gelu", **kwargs):
    layer = keras.layers.EinsumDense("abc,cd->abd", (None, 6), bias_axes="d", activation=activation)
    layer.build((None, 5, 3))
    quantizer = tq.MovingAverageQuantizer(8, per_axis=False, symmetric=False, narrow_range=False)
    wrapper = tq.QuantizeWrapper(
        layer,
        tq.DefaultQuantizeConfig(["kernel"]),
        input_quantizer=quantizer if input_quantizer else None,
        input_scale=input_scale,
        **kwargs,
    )
    wrapper.build((None, 5, 3))
    return layer, wrapper


def test_input_scale_moves_the_factors_into_the_kernel_rows():
    factors = np.array([0.5, 4.0, 1.0], "float32")
    layer, wrapper = _smoothed_einsum(factors)
    np.testing.assert_allclose(wrapper.input_scale.numpy(), factors)
    kernel = np.asarray(wrapper.weight_tensor(layer.kernel))
    np.testing.assert_allclose(kernel, layer.kernel.numpy() * factors[:, None], rtol=1e-6)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    x[..., 1] *= 30.0  # the channel the factor 4 shrinks
    scaled = np.asarray(scale_input(x, wrapper.input_scale, wrapper.plan.spec.in_shape))
    np.testing.assert_allclose(scaled, x / factors, rtol=1e-6)
    # Same function: (x / s) @ (s W) == x @ W, so the quantized wrapper stays close.
    np.testing.assert_allclose(
        np.asarray(wrapper(x, training=True)), np.asarray(layer(x)), atol=0.25
    )
    # The weight range covers the scaled kernel.
    _, quantizer, qvars, _ = wrapper.quantized_weights[0]
    assert float(np.asarray(qvars["max_var"])) == pytest.approx(np.abs(kernel).max(), rel=1e-5)


def test_input_scale_saves_and_reloads(tmp_path):
    from tfcompress.saving import load_model

    factors = np.array([0.5, 4.0, 1.0], "float32")
    _, wrapper = _smoothed_einsum(factors)
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, wrapper(inputs))
    x = np.random.default_rng(1).normal(size=(4, 5, 3)).astype("float32")
    model(x, training=True)
    model.save(tmp_path / "smoothed.keras")
    reloaded = load_model(tmp_path / "smoothed.keras")
    np.testing.assert_array_equal(reloaded.layers[-1].input_scale.numpy(), factors)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize(
    "factors, kwargs, match",
    [
        ([1.0, 2.0], {}, "has 3 input channels, not 2"),
        ([1.0, 2.0, 3.0], dict(input_quantizer=False), "no `input_quantizer`"),
        (
            [1.0, 2.0, 3.0],
            dict(input_outlier_channels=[1], input_quantizer=False, activation=None),
            "pass one or the other",
        ),
    ],
)
def test_input_scale_errors_name_the_layer_and_the_fix(factors, kwargs, match):
    with pytest.raises(
        ValueError, match=rf"`input_scale` cannot be used on layer .*{match}.*Leave it out"
    ):
        _smoothed_einsum(np.array(factors, "float32"), **kwargs)


@pytest.mark.parametrize("factors", [[1.0, -2.0, 1.0], [[1.0, 2.0, 3.0]], [1.0, np.inf, 1.0], "2"])
def test_input_scale_must_be_positive_factors(factors):
    with pytest.raises(
        ValueError, match="`input_scale` of layer .* must be a 1-D vector of positive finite"
    ):
        tq.QuantizeWrapper(keras.layers.Dense(2), tq.DefaultQuantizeConfig(), input_scale=factors)


def _channel_scaled_embedding(layer=None, **kwargs):
    layer = layer or keras.layers.Embedding(20, 6)
    layer.build((None, 4))
    table = np.random.default_rng(0).normal(size=(20, 6)).astype("float32") * 0.05
    table[:, 2] *= 20.0  # one dimension spans 20x the others
    layer.embeddings.assign(table)
    config = tq.DefaultQuantizeConfig(["embeddings"], quantize_output=False)
    wrapper = tq.QuantizeWrapper(layer, config, **kwargs)
    wrapper.build((None, 4))
    return layer, wrapper, table


def _per_column_int8(table):
    scale = np.abs(table).max(axis=0) / 127.0
    return np.clip(np.round(table / scale), -127, 127) * scale


def test_embedding_channel_scales_give_each_dimension_its_own_int8_scale():
    _, wrapper, table = _channel_scaled_embedding(embedding_channel_scales=True)
    ids = np.array([[0, 3, 7, 19], [5, 5, 1, 2]], "int32")
    reference = _per_column_int8(table)[ids]
    np.testing.assert_allclose(np.asarray(wrapper(ids)), reference, rtol=1e-5, atol=1e-7)
    _, plain, _ = _channel_scaled_embedding()
    error = np.abs(np.asarray(wrapper(ids)) - table[ids]).mean()
    assert error < np.abs(np.asarray(plain(ids)) - table[ids]).mean() / 4
    config = wrapper.get_config()
    assert config["embedding_channel_scales"] is True
    again = tq.QuantizeWrapper.from_config(config)
    again.build((None, 4))
    again.set_weights(wrapper.get_weights())
    np.testing.assert_array_equal(np.asarray(again(ids)), np.asarray(wrapper(ids)))


def test_reversible_embedding_channel_scales_in_reverse_mode():
    import keras_hub

    layer, wrapper, table = _channel_scaled_embedding(
        keras_hub.layers.ReversibleEmbedding(20, 6), embedding_channel_scales=True
    )
    x = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")
    np.testing.assert_allclose(
        np.asarray(wrapper(x, reverse=True)), x @ _per_column_int8(table).T, rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: _dense_wrapper_with_channel_scales(), "only applies to an Embedding"),
        (
            lambda: tq.QuantizeWrapper(
                keras.layers.Embedding(20, 6),
                tq.DefaultQuantizeConfig(["embeddings"]),
                embedding_channel_scales=True,
            ).build((None, 4)),
            "output cannot be quantized",
        ),
        (
            lambda: tq.QuantizeWrapper(
                keras.layers.Embedding(20, 6),
                tq.DefaultQuantizeConfig([], quantize_output=False),
                embedding_channel_scales=True,
            ).build((None, 4)),
            "does not quantize its `embeddings`",
        ),
    ],
)
def test_embedding_channel_scales_errors_name_the_layer_and_the_fix(make, match):
    with pytest.raises(
        ValueError,
        match=rf"`embedding_channel_scales` cannot be used on layer .*{match}.*Leave it out",
    ):
        make()


def _dense_wrapper_with_channel_scales():
    wrapper = tq.QuantizeWrapper(
        keras.layers.Dense(2), tq.DefaultQuantizeConfig(), embedding_channel_scales=True
    )
    wrapper.build((None, 3))


def _scaled_dense(output_scale, per_axis=True, **kwargs):
    layer = keras.layers.Dense(4, bias_initializer="ones")
    layer.build((None, 5, 3))
    config = tq.DefaultQuantizeConfig(["kernel"], weight_per_axis=per_axis)
    wrapper = tq.QuantizeWrapper(layer, config, output_scale=output_scale, **kwargs)
    wrapper.build((None, 5, 3))
    return layer, wrapper


def test_output_scale_divides_the_kernel_columns_and_multiplies_the_output():
    factors = np.array([1.0, 40.0, 1.0, 1.0], "float32")
    layer, wrapper = _scaled_dense(factors)
    kernel = layer.kernel.numpy()
    kernel[:, 1] *= 40.0  # output channel 1 spans 40x the others
    layer.kernel.assign(kernel)
    wrapper.calibrate_weights()
    np.testing.assert_allclose(
        np.asarray(wrapper.weight_tensor(layer.kernel)), kernel / factors, rtol=1e-6
    )
    x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
    wrapper(x, training=True)  # output range from the scaled matmul: channel 1 no longer sets it
    _, qvars = wrapper.quantized_outputs[0]
    expected = np.asarray(layer(x)) / factors
    assert float(qvars["max_var"].numpy()) == pytest.approx(expected.max(), rel=1e-2)
    scaled_error = np.abs(np.asarray(wrapper(x)) - np.asarray(layer(x)))[..., [0, 2, 3]].mean()
    _, plain = _scaled_dense(None)
    plain.layer.kernel.assign(kernel)
    plain.layer.bias.assign(layer.bias.numpy())
    plain.calibrate_weights()
    plain(x, training=True)
    plain_error = np.abs(np.asarray(plain(x)) - np.asarray(layer(x)))[..., [0, 2, 3]].mean()
    assert scaled_error < plain_error / 4, (scaled_error, plain_error)
    config = wrapper.get_config()
    assert config["output_scale"] is True
    again = tq.QuantizeWrapper.from_config(config)
    again.build((None, 5, 3))
    again.set_weights(wrapper.get_weights())
    np.testing.assert_array_equal(again.output_scale.numpy(), factors)
    np.testing.assert_array_equal(np.asarray(again(x)), np.asarray(wrapper(x)))


@pytest.mark.parametrize(
    "factors, kwargs, match",
    [
        ([1.0, 2.0], {}, "has 4 output channels, not 2"),
        ([1.0, 2.0, 1.0, 1.0], dict(outlier_channels=[1]), "pass one or the other"),
        ([1.0, 2.0, 1.0, 1.0], dict(per_axis=False), "needs per-channel weights"),
    ],
)
def test_output_scale_errors_name_the_layer_and_the_fix(factors, kwargs, match):
    with pytest.raises(
        ValueError, match=rf"`output_scale` cannot be used on layer .*{match}.*Leave it out"
    ):
        _scaled_dense(np.array(factors, "float32"), **kwargs)


def test_output_scale_must_be_positive_factors():
    with pytest.raises(ValueError, match="`output_scale` of layer .* one per flat output channel"):
        tq.QuantizeWrapper(
            keras.layers.Dense(2), tq.DefaultQuantizeConfig(), output_scale=[1.0, 0.0]
        )
