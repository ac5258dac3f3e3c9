import keras
import numpy as np
import pytest

import tfcompress.quantization as tq


def _conv_bn(layer):
    rng = np.random.default_rng(0)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    model = keras.Sequential([keras.Input((6, 6, 4)), layer, bn])
    channels = bn.gamma.shape[0]
    for variable in (bn.gamma, bn.beta, bn.moving_mean):
        variable.assign(rng.normal(size=channels).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=channels).astype("float32"))
    return model, bn


@pytest.mark.parametrize(
    "layer",
    [
        lambda: keras.layers.Conv2D(8, 3, use_bias=False),
        lambda: keras.layers.Conv2D(8, 3, use_bias=True, bias_initializer="ones"),
        lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        lambda: keras.layers.Dense(5),
    ],
)
def test_folded_output_matches_conv_then_batch_norm(layer):
    model, bn = _conv_bn(layer())
    x = np.random.default_rng(1).normal(size=(4, 6, 6, 4)).astype("float32")
    expected = model(x, training=False).numpy()
    inner = model.layers[0]
    config = tq.DefaultQuantizeConfig(["kernel"], weight_bits=8, quantize_output=False)
    wrapper = tq.FoldBatchNormQuantizeWrapper(inner, config, epsilon=bn.epsilon)
    wrapper.build((None, 6, 6, 4))
    wrapper.set_batch_norm(bn)
    for training in (False, True):
        got = wrapper(x, training=training).numpy()
        # Only the folded kernel's 8-bit rounding separates them.
        assert np.abs(got - expected).max() < 0.03 * np.abs(expected).max()


def test_kernel_quantization_uses_the_folded_kernel():
    model, bn = _conv_bn(keras.layers.Conv2D(8, 3, use_bias=False))
    conv = model.layers[0]
    wrapper = tq.FoldBatchNormQuantizeWrapper(
        conv, tq.DefaultQuantizeConfig(["kernel"], weight_per_axis=True)
    )
    wrapper.build((None, 6, 6, 4))
    wrapper.set_batch_norm(bn)
    factor = bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    folded = conv.kernel.numpy() * factor
    ranges = [v.numpy() for v in wrapper.non_trainable_weights if v.path.endswith("kernel_max")][0]
    np.testing.assert_allclose(ranges, np.abs(folded).max(axis=(0, 1, 2)), rtol=1e-5)


def test_rejects_a_nonlinear_layer():
    layer = keras.layers.Conv2D(4, 3, activation="relu")
    with pytest.raises(ValueError, match="linear activation"):
        tq.FoldBatchNormQuantizeWrapper(layer, tq.DefaultQuantizeConfig(["kernel"]))


def test_config_round_trip():
    layer = keras.layers.Conv2D(4, 3)
    wrapper = tq.FoldBatchNormQuantizeWrapper(
        layer, tq.DefaultQuantizeConfig(["kernel"]), epsilon=1e-5
    )
    restored = tq.FoldBatchNormQuantizeWrapper.from_config(wrapper.get_config())
    assert restored.epsilon == 1e-5 and restored.get_config() == wrapper.get_config()


def test_training_refreshes_stale_statistics_without_a_second_conv():
    conv = keras.layers.Conv2D(4, 3, use_bias=True, bias_initializer="ones")
    model = keras.Sequential([keras.Input((6, 6, 2)), conv])
    bn = keras.layers.BatchNormalization()  # stale: mean 0, variance 1
    bn.build((None, 4, 4, 4))
    config = tq.DefaultQuantizeConfig(["kernel"], weight_bits=8, quantize_output=False)
    wrapper = tq.FoldBatchNormQuantizeWrapper(conv, config, momentum=0.5)
    wrapper.build((None, 6, 6, 2))
    wrapper.set_batch_norm(bn)
    x = np.random.default_rng(0).normal(size=(32, 6, 6, 2)).astype("float32")
    conv_out = model(x).numpy().reshape(-1, 4)
    for _ in range(20):
        wrapper(x, training=True)
    np.testing.assert_allclose(wrapper.moving_mean.numpy(), conv_out.mean(0), atol=0.02)
    np.testing.assert_allclose(wrapper.moving_variance.numpy(), conv_out.var(0), rtol=0.05)
    frozen = tq.FoldBatchNormQuantizeWrapper.from_config(
        {**wrapper.get_config(), "update_statistics": False}
    )
    assert frozen.update_statistics is False and frozen.momentum == 0.5
