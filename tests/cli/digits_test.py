import keras
import numpy as np
import pytest

from tfcompress.cli import digits


@pytest.mark.parametrize(
    "variant, params",
    [
        ({}, 38426),
        ({"batch_norm": False, "padding": "valid"}, 13706),
        ({"pooled": True}, 5274),
    ],
)
def test_builder_variants_give_logits_for_digit_images(variant, params):
    x_train, y_train, x_test, _ = digits.load_digits(0)
    model = digits.build_digits_cnn(**variant)
    assert model.count_params() == params
    logits = model.predict(x_test[:3], verbose=0)
    assert logits.shape == (3, digits.NUM_CLASSES)
    assert np.all(np.isfinite(logits))
    assert x_train.shape[1:] == digits.IMAGE_SHAPE and set(np.unique(y_train)) == set(range(10))


def test_builder_takes_the_keras_module():
    model = digits.build_digits_cnn(keras, batch_norm=False, padding="valid")
    assert [layer.name for layer in model.layers] == [
        "conv1",
        "conv2",
        "pool",
        "flatten",
        "dense",
        "logits",
    ]


def test_pooled_variant_pools_between_the_blocks():
    model = digits.build_digits_cnn(pooled=True)
    assert [layer.name for layer in model.layers] == [
        "conv1",
        "bn1",
        "relu1",
        "pool",
        "conv2",
        "bn2",
        "relu2",
        "global_pool",
        "logits",
    ]
    assert [layer.momentum for layer in model.layers if "bn" in layer.name] == [0.9, 0.9]


def test_test_fraction_0_keeps_every_digit_in_scikit_learn_order():
    from sklearn import datasets

    x_train, y_train, x_test, y_test = digits.load_digits(test_fraction=0)
    reference = datasets.load_digits()
    np.testing.assert_array_equal(x_train.reshape(len(x_train), -1), reference.data / 16.0)
    np.testing.assert_array_equal(y_train, reference.target)
    assert x_test.shape == (0,) + digits.IMAGE_SHAPE and y_test.shape == (0,)


def test_bad_padding_fails_naming_the_argument():
    with pytest.raises(
        ValueError, match=r'`padding` must be "same" or "valid". Received: padding=\'full\''
    ):
        digits.build_digits_cnn(padding="full")
