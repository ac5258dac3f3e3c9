"""The bundled default of `tfcompress demo`: scikit-learn's digits and a CNN."""

import numpy as np

IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10


def load_digits(seed=0, test_fraction=0.2, shuffle_train=False):
    """scikit-learn's 1,797 bundled 8x8 digits as float32 images in [0, 1].

    The one loader of the project: the demo, examples, benchmarks (also their
    tf_keras/TFMOT workers: nothing here imports Keras) and tests use it.

    Args:
        seed: seed of the stratified split and of the training order.
        test_fraction: share of examples held out for testing.
        shuffle_train: reorder the training examples with `seed`, so two
            frameworks fed with `fit(shuffle=False)` see the same order.

    Returns:
        `(x_train, y_train, x_test, y_test)` with int32 labels.
    """
    from sklearn import datasets, model_selection

    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    if shuffle_train:
        order = np.random.default_rng(seed).permutation(len(x_train))
        x_train, y_train = x_train[order], y_train[order]
    return x_train, y_train, x_test, y_test


def build_digits_cnn():
    """A small Conv+BN+ReLU CNN for 8x8x1 digits, logits out (about 22k weights)."""
    import keras

    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(IMAGE_SHAPE, name="image"),
            layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.ReLU(name="relu1"),
            layers.Conv2D(32, 3, padding="same", use_bias=False, name="conv2"),
            layers.BatchNormalization(name="bn2"),
            layers.ReLU(name="relu2"),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense"),
            layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name="digits_cnn",
    )
