"""scikit-learn's digits and the CNN the demo, examples, benchmarks and tests train on them."""

import numpy as np

IMAGE_SHAPE = (8, 8, 1)
NUM_CLASSES = 10


def load_digits(seed=0, test_fraction=0.2, shuffle_train=False):
    """scikit-learn's 1,797 bundled 8x8 digits as float32 images in [0, 1].

    The one loader of the project: the demo, examples, benchmarks (also their
    tf_keras/TFMOT workers: nothing here imports Keras) and tests use it.

    Args:
        seed: seed of the stratified split and of the training order.
        test_fraction: share of examples held out for testing; 0 keeps every
            example for training, in scikit-learn's order (the test arrays
            are then empty).
        shuffle_train: reorder the training examples with `seed`, so two
            frameworks fed with `fit(shuffle=False)` see the same order.

    Returns:
        `(x_train, y_train, x_test, y_test)` with int32 labels; images are
        `(n,) + IMAGE_SHAPE` (`x.reshape(len(x), -1)` gives the 64 pixels).
    """
    from sklearn import datasets, model_selection

    digits = datasets.load_digits()
    images = (digits.images / 16.0).astype("float32")[..., np.newaxis]
    labels = digits.target.astype("int32")
    if test_fraction == 0:
        x_train, x_test, y_train, y_test = images, images[:0], labels, labels[:0]
    else:
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


def build_digits_cnn(keras_module=None, batch_norm=True, padding="same", pooled=False):
    """The digits CNN for 8x8x1 images: two 3x3 conv blocks of 16 and 32
    filters, then a classifier head giving logits.

    - defaults (the demo): Conv+BN+ReLU twice, max pool, Flatten, Dense 64,
      logits; 38,426 weights.
    - `batch_norm=False, padding="valid"` (the pruning benchmarks): convs
      with a bias and ReLU, max pool, Flatten, Dense 64, logits; 13,706.
    - `pooled=True` (the quantization benchmarks and tests): Conv+BN+ReLU,
      max pool, Conv+BN+ReLU, global average pool, logits; 5,274.

    With `keras_module=tf_keras` it builds the same layers in the same order,
    so a TFMOT twin is the same network and `get_weights()` lists line up.

    Args:
        keras_module: `keras` or `tf_keras`; None imports `keras`.
        batch_norm: each conv is bias-free and followed by BatchNormalization
            (momentum 0.9) and ReLU; False gives convs with a bias and a ReLU
            activation.
        padding: padding of both convs, "same" or "valid".
        pooled: max pool between the blocks and global average pooling
            into the logits, instead of max pool, Flatten and Dense 64.

    Returns:
        A `Sequential` model named "digits_cnn", built for `IMAGE_SHAPE` inputs.

    Raises:
        ValueError: for a `padding` other than "same" or "valid".

    Example:

    ```python
    from tfcompress.cli import digits
    x_train, y_train, x_test, y_test = digits.load_digits(seed=0)
    model = digits.build_digits_cnn(pooled=True)
    ```
    """
    if padding not in ("same", "valid"):
        raise ValueError(f'`padding` must be "same" or "valid". Received: padding={padding!r}')
    keras_module = _keras(keras_module)
    layers = keras_module.layers

    def block(index, filters):
        if not batch_norm:
            return [
                layers.Conv2D(filters, 3, padding=padding, activation="relu", name=f"conv{index}")
            ]
        return [
            layers.Conv2D(filters, 3, padding=padding, use_bias=False, name=f"conv{index}"),
            layers.BatchNormalization(momentum=0.9, name=f"bn{index}"),
            layers.ReLU(name=f"relu{index}"),
        ]

    if pooled:
        body = [
            *block(1, 16),
            layers.MaxPooling2D(2, name="pool"),
            *block(2, 32),
            layers.GlobalAveragePooling2D(name="global_pool"),
        ]
    else:
        body = [
            *block(1, 16),
            *block(2, 32),
            layers.MaxPooling2D(2, name="pool"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="dense"),
        ]
    return keras_module.Sequential(
        [
            keras_module.Input(IMAGE_SHAPE, name="image"),
            *body,
            layers.Dense(NUM_CLASSES, name="logits"),
        ],
        name="digits_cnn",
    )
