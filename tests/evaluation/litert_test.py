"""Evaluation of a real converted LiteRT model against its Keras original."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import evaluation

from .fakes import InterpreterModel

X = np.random.default_rng(0).normal(size=(40, 8)).astype("float32")


@pytest.fixture(scope="module")
def models():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5)]
    )
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    return model, flatbuffer


def test_converted_model_matches_keras(models):
    model, flatbuffer = models
    lite = InterpreterModel(flatbuffer)
    y = np.argmax(model.predict_on_batch(X), axis=-1)
    y[:10] = (y[:10] + 1) % 5  # make 10 of 40 labels wrong for both models
    assert evaluation.accuracy(model, X, y) == pytest.approx(0.75)
    assert evaluation.accuracy(lite, X, y, batch_size=7) == pytest.approx(0.75)
    keras_logits = model.predict_on_batch(X)
    lite_logits = lite.run(X)
    assert evaluation.agreement(keras_logits, lite_logits) == 1.0
    assert evaluation.cosine_similarity(keras_logits, lite_logits).min > 0.9999


def test_flatbuffer_size_and_comparison(models, tmp_path):
    model, flatbuffer = models
    size = evaluation.model_size(flatbuffer)
    # 8*16+16 + 16*5+5 = 229 float32 weights, plus the flatbuffer's graph.
    assert 229 * 4 < size["raw_bytes"] < 229 * 4 + 20_000
    table = evaluation.compare(
        [
            {"name": "keras", "size": evaluation.model_size(model), "accuracy": 1.0},
            {"name": "tflite", "size": size, "accuracy": 1.0},
        ]
    ).table()
    assert "keras (ref)" in table and "916 B" in table


def test_with_tfcompress_runtime(models):
    from tfcompress import runtime

    model, flatbuffer = models
    lite = runtime.load(flatbuffer)
    y = np.argmax(model.predict_on_batch(X), axis=-1)
    assert evaluation.accuracy(lite, X, y) == 1.0
    result = evaluation.latency(flatbuffer, X[:1], num_threads=1, warmup=1, runs=5)
    assert result.runs == 5 and result.num_threads == 1
    assert 0 < result.p50_ms <= result.p90_ms
    usage = evaluation.peak_memory(flatbuffer, X[:1])
    assert usage.peak_rss_bytes > 0
