import numpy as np

from tfcompress.quantization import scale_math

_RNG = np.random.default_rng(0)


def test_scaled_input_times_scaled_kernel_is_the_matmul():
    x = _RNG.normal(size=(4, 3)).astype("float32")
    kernel = _RNG.normal(size=(3, 5)).astype("float32")
    input_scale = np.array([1.0, 4.0, 0.5], "float32")
    output_scale = np.array([1.0, 1.0, 8.0, 1.0, 2.0], "float32")
    scaled_x = np.asarray(scale_math.scale_input(x, input_scale, (3,)))
    np.testing.assert_allclose(scaled_x, x / input_scale, rtol=1e-6)
    scaled_kernel = np.asarray(
        scale_math.scale_kernel(kernel, (3,), (5,), input_scale, output_scale)
    )
    np.testing.assert_allclose(
        scaled_kernel, kernel * input_scale[:, None] / output_scale, rtol=1e-6
    )
    outputs = np.asarray(scale_math.unscale_output(scaled_x @ scaled_kernel, output_scale, (5,)))
    np.testing.assert_allclose(outputs, x @ kernel, rtol=1e-5, atol=1e-5)
    assert np.asarray(scale_math.scale_kernel(kernel, (3,), (5,))).tolist() == kernel.tolist()


def test_flat_bias_is_divided_like_the_kernel_columns():
    bias = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    scale = np.array([1.0, 2.0, 4.0, 8.0], "float32")
    flat = np.asarray(scale_math.scale_flat_bias(bias, (2, 2), scale))
    np.testing.assert_allclose(flat, [1.0, 1.0, 0.75, 0.5])
    assert scale_math.scale_flat_bias(None, (2, 2), scale) is None


def test_channel_keep_zeroes_the_channels():
    assert scale_math.channel_keep(5, (1, 3)).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


def test_embedding_channel_scales_are_each_column_over_the_table_peak():
    table = np.array([[1.0, -8.0, 0.0], [2.0, 4.0, 0.0]], "float32")
    scales = np.asarray(scale_math.embedding_channel_scales(table))
    np.testing.assert_allclose(scales[:2], [0.25, 1.0], rtol=1e-6)
    assert 0 < scales[2] <= 1e-5  # an all-zero column still divides safely


def test_batch_norm_folding_and_recovered_statistics():
    gamma, beta = np.array([2.0, 0.5], "float32"), np.array([0.1, -0.2], "float32")
    mean, variance = np.array([1.0, -1.0], "float32"), np.array([4.0, 0.25], "float32")
    factor = np.asarray(scale_math.fold_factor(gamma, variance, 0.0))
    np.testing.assert_allclose(factor, [1.0, 1.0])
    raw = _RNG.normal(size=(64, 2)).astype("float32") * 3 + 5
    bias = np.array([0.5, 0.0], "float32")
    folded_bias = np.asarray(scale_math.fold_bias(beta, mean, factor, bias))
    # BN(raw + bias) == raw * factor + folded bias
    expected = gamma * (raw + bias - mean) / np.sqrt(variance) + beta
    np.testing.assert_allclose(raw * factor + folded_bias, expected, rtol=1e-5)
    batch_mean, batch_variance = scale_math.batch_statistics(raw * factor, factor, bias)
    np.testing.assert_allclose(np.asarray(batch_mean), raw.mean(0) + bias, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(batch_variance), raw.var(0), rtol=1e-4)
