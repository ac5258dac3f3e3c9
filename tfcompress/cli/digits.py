"""scikit-learn's digits and the CNNs the demo, examples, benchmarks and tests train on them."""

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


def _keras(keras_module):
    if keras_module is None:
        import keras as keras_module
    return keras_module


def build_digits_cnn(keras_module=None):
    """The demo's CNN for 8x8x1 digits: Conv+BN+ReLU twice, max pool, Dense 64,
    logits (38,426 weights).

    The builders here all take `keras_module`: `keras` (the default) or
    `tf_keras`, which builds the same layers in the same order, so a TFMOT
    twin is the same network and `get_weights()` lists line up.

    Args:
        keras_module: `keras` or `tf_keras`; None imports `keras`.

    Returns:
        A `Sequential` model built for `IMAGE_SHAPE` inputs.
    """
    keras_module = _keras(keras_module)
    layers = keras_module.layers
    return keras_module.Sequential(
        [
            keras_module.Input(IMAGE_SHAPE, name="image"),
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


def build_plain_digits_cnn(keras_module=None):
    """The pruning CNN, without batch norm: two valid 3x3 convolutions with
    ReLU, max pool, Dense 64, logits.

    Args:
        keras_module: as in `build_digits_cnn`.

    Returns:
        A `Sequential` model built for `IMAGE_SHAPE` inputs.
    """
    keras_module = _keras(keras_module)
    layers = keras_module.layers
    return keras_module.Sequential(
        [
            keras_module.Input(shape=IMAGE_SHAPE),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense1"),
            layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name="digits_cnn",
    )


def build_pooled_digits_cnn(keras_module=None):
    """The quantization CNN: Conv+BN+ReLU, max pool, Conv+BN+ReLU, global
    average pool, Dense logits (functional, default layer names).

    Args:
        keras_module: as in `build_digits_cnn`.

    Returns:
        A functional `Model` built for `IMAGE_SHAPE` inputs.
    """
    keras_module = _keras(keras_module)
    layers = keras_module.layers
    inputs = keras_module.Input(IMAGE_SHAPE)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras_module.Model(inputs, layers.Dense(NUM_CLASSES)(x))
