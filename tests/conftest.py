"""Small `.tflite` files built with the stock converter (not tfcompress.export), for any test."""

import contextlib
import io
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf


def _convert(converter):
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return converter.convert()


@pytest.fixture(scope="package")
def small_dense_model():
    """6 -> 16 -> 3 MLP (tests/export has its own larger `dense_model`)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,), name="features")
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(hidden))


@pytest.fixture(scope="package")
def dense_tflite(small_dense_model):
    """Float32 flatbuffer of `small_dense_model`; dynamic batch."""
    return _convert(tf.lite.TFLiteConverter.from_keras_model(small_dense_model))


@pytest.fixture(scope="package")
def int8_tflite(small_dense_model):
    """Full-integer flatbuffer of `small_dense_model` with int8 input and output."""
    data = np.random.default_rng(0).normal(size=(64, 6)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(small_dense_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return _convert(converter)


@pytest.fixture(scope="package")
def two_input_model():
    """Token ids (int32) and a float feature in, two named outputs out."""
    keras.utils.set_random_seed(1)
    ids = keras.Input((5,), dtype="int32", name="ids")
    scale = keras.Input((1,), name="scale")
    embedded = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(ids))
    logits = keras.layers.Dense(2)(embedded) * scale
    return keras.Model([ids, scale], {"logits": logits, "embedding": embedded})


@pytest.fixture(scope="package")
def two_input_tflite(two_input_model):
    return _convert(tf.lite.TFLiteConverter.from_keras_model(two_input_model))


@pytest.fixture(scope="package")
def two_signature_tflite(tmp_path_factory):
    """A module with `add_one` and `double` signatures."""

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def add_one(self, x):
            return {"y": x + 1.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def double(self, x):
            return {"y": x * 2.0}

    module = Module()
    directory = str(tmp_path_factory.mktemp("two_signatures"))
    tf.saved_model.save(
        module,
        directory,
        signatures={"add_one": module.add_one, "double": module.double},
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(
        directory, signature_keys=["add_one", "double"]
    )
    return _convert(converter)


@pytest.fixture(scope="package")
def unsigned_tflite(dense_tflite):
    """`dense_tflite` with its signature removed, as some older exporters write."""
    from tfcompress.export import flatbuffer

    model = flatbuffer.read_model(dense_tflite)
    model.signatureDefs = []
    return flatbuffer.pack(model)
