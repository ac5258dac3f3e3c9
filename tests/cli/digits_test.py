import keras
import numpy as np
import pytest

from tfcompress.cli import digits


@pytest.mark.parametrize(
    "build, params",
    [
        (digits.build_digits_cnn, 38426),
        (digits.build_plain_digits_cnn, 13706),
        (digits.build_pooled_digits_cnn, 5274),
    ],
)
def test_builders_give_logits_for_digit_images(build, params):
    x_train, y_train, x_test, _ = digits.load_digits(0)
    model = build()
    assert model.count_params() == params
    logits = model.predict(x_test[:3], verbose=0)
    assert logits.shape == (3, digits.NUM_CLASSES)
    assert np.all(np.isfinite(logits))
    assert x_train.shape[1:] == digits.IMAGE_SHAPE and set(np.unique(y_train)) == set(range(10))


def test_builders_take_the_keras_module():
    model = digits.build_plain_digits_cnn(keras)
    assert [layer.name for layer in model.layers] == [
        "conv1",
        "conv2",
        "pool",
        "flatten",
        "dense1",
        "logits",
    ]
