import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.sparsity import (
    ConstantSparsity,
    PolynomialDecay,
    PruneLowMagnitude,
    UpdatePruningStep,
    prune_low_magnitude,
)

import testing


def _wrapped_dense(sparsity=0.5, **kwargs):
    dense = keras.layers.Dense(4, name="dense")
    dense.build((None, 8))
    wrapper = PruneLowMagnitude(dense, ConstantSparsity(sparsity, 0, frequency=1), **kwargs)
    wrapper.build((None, 8))
    return wrapper


def test_variables_and_names():
    wrapper = _wrapped_dense()
    assert wrapper.name == "prune_low_magnitude_dense"
    assert [w.name for w in wrapper.non_trainable_weights] == ["kernel_mask", "pruning_step"]
    assert [w.path for w in wrapper.trainable_weights] == ["dense/kernel", "dense/bias"]
    assert int(wrapper.pruning_step.numpy()) == -1
    np.testing.assert_array_equal(wrapper.masks[0].numpy(), np.ones((8, 4)))


def test_call_uses_masked_kernel_and_gradient_reaches_variable():
    wrapper = _wrapped_dense()
    wrapper.update_masks(0.5)
    mask = wrapper.masks[0].numpy()
    wrapper.layer.kernel.assign(np.ones((8, 4), "float32"))  # revive pruned
    x = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
    expected = x @ (np.ones((8, 4)) * mask) + wrapper.layer.bias.numpy()
    np.testing.assert_allclose(wrapper(x).numpy(), expected, atol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapper(x))
    grad = tape.gradient(loss, wrapper.layer.kernel)
    assert grad is not None
    # Pruned weights get no gradient; kept weights get d(sum)/dw = sum(x).
    np.testing.assert_allclose(grad.numpy() * (1 - mask), 0.0)
    np.testing.assert_allclose(
        (grad.numpy() * mask)[mask == 1],
        np.broadcast_to(x.sum(0)[:, None], (8, 4))[mask == 1],
        atol=1e-5,
    )


def test_training_without_callback_says_to_add_it():
    model = keras.Sequential([keras.Input((8,)), _wrapped_dense()])
    model.compile("sgd", "mse")
    with pytest.raises(RuntimeError, match=r"Add it: `model.fit\(.*UpdatePruningStep"):
        model.fit(np.ones((4, 8)), np.ones((4, 4)), verbose=0)


def test_missing_callback_caught_when_training_is_not_passed_down():
    pruned = prune_low_magnitude(testing.subclassed())  # call(inputs) only
    pruned.compile("sgd", "mse")
    with pytest.raises(RuntimeError, match="without the `tfcompress.sparsity.UpdatePruningStep"):
        pruned.fit(np.ones((4, 6)), np.ones((4, 3)), verbose=0)


def test_update_keeps_weights_zero_under_momentum():
    wrapper = _wrapped_dense(0.75)
    model = keras.Sequential([keras.Input((8,)), wrapper])
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), "mse")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    model.fit(x, x[:, :4], batch_size=4, epochs=2, verbose=0, callbacks=[UpdatePruningStep()])
    kernel = wrapper.layer.kernel.numpy()
    assert np.mean(kernel == 0) == 0.75
    np.testing.assert_array_equal(kernel == 0, wrapper.masks[0].numpy() == 0)


def test_config_round_trip():
    wrapper = _wrapped_dense(block_size=(2, 1), block_pooling_type="MAX", prune_embeddings=True)
    wrapper.pruning_schedule = PolynomialDecay(0.1, 0.7, 2, 20, power=2, frequency=3)
    config = wrapper.get_config()
    for key in (
        "pruning_schedule",
        "block_size",
        "block_pooling_type",
        "sparsity_m_by_n",
        "prune_embeddings",
        "layer",
    ):
        assert key in config
    clone = PruneLowMagnitude.from_config(config)
    assert clone.get_config() == config
    assert clone.pruning_schedule.get_config() == wrapper.pruning_schedule.get_config()
    assert clone.block_size == (2, 1)
    m_by_n = PruneLowMagnitude.from_config(_wrapped_dense(sparsity_m_by_n=(2, 4)).get_config())
    assert m_by_n.sparsity_m_by_n == (2, 4)


def test_keras_save_of_sequential_with_wrapper(tmp_path):
    wrapper = _wrapped_dense()
    wrapper.update_masks(0.5)
    model = keras.Sequential([keras.Input((8,)), wrapper])
    x = np.ones((2, 8), "float32")
    restored = testing.run_model_saving_test(model, x, tmp_path)
    inner = restored.layers[0]
    assert isinstance(inner, PruneLowMagnitude)
    np.testing.assert_array_equal(inner.masks[0].numpy(), wrapper.masks[0].numpy())


def test_conv_and_embedding_kernels():
    conv = keras.layers.Conv2D(4, 3)
    conv.build((None, 6, 6, 8))
    wrapper = PruneLowMagnitude(conv, ConstantSparsity(0.5, 0), sparsity_m_by_n=(2, 4))
    wrapper.build((None, 6, 6, 8))
    wrapper.update_masks()
    from tfcompress.sparsity.masks import is_m_by_n_sparse

    assert bool(is_m_by_n_sparse(conv.kernel, 2, 4, axis=2))
    embedding = keras.layers.Embedding(10, 4)
    embedding.build((None,))
    with pytest.raises(ValueError, match="prune_embeddings=True"):
        PruneLowMagnitude(embedding).build((None,))
    wrapper = PruneLowMagnitude(embedding, ConstantSparsity(0.5, 0), prune_embeddings=True)
    wrapper.build((None,))
    wrapper.update_masks()
    assert np.mean(embedding.embeddings.numpy() == 0) == 0.5
