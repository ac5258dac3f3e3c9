import time
import tracemalloc

import keras
import numpy as np
import pytest

from tfcompress import evaluation

X = np.ones((1, 4), dtype="float32")
MB = 1_000_000


def _allocate_50mb(x):
    block = np.ones(50 * MB, dtype=np.uint8)  # written, so resident
    time.sleep(0.05)  # held long enough for the RSS sampler to see it
    return block[:1]


def test_allocation_during_the_run_shows_in_rss_and_tracemalloc():
    usage = evaluation.peak_memory(_allocate_50mb, X)
    assert usage.rss_delta_bytes >= 40 * MB
    assert usage.peak_rss_bytes >= usage.baseline_rss_bytes + 40 * MB
    assert usage.python_peak_bytes >= 50 * MB
    assert usage.python_peak_bytes < 60 * MB


def test_keras_model_usage_is_small_and_consistent():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.predict_on_batch(X)
    usage = evaluation.peak_memory(model, X, runs=3)
    assert usage.peak_rss_bytes >= usage.baseline_rss_bytes
    assert usage.rss_delta_bytes == usage.peak_rss_bytes - usage.baseline_rss_bytes
    assert usage.rss_delta_bytes < 200 * MB
    assert set(usage.as_dict()) == {
        "baseline_rss_bytes",
        "peak_rss_bytes",
        "rss_delta_bytes",
        "python_peak_bytes",
        "exact_peak",
    }


def test_tracemalloc_state_is_restored():
    assert not tracemalloc.is_tracing()
    evaluation.peak_memory(lambda x: x, X)
    assert not tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        evaluation.peak_memory(lambda x: x, X)
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


def test_errors():
    with pytest.raises(ValueError, match="`runs` must be an int >= 1"):
        evaluation.peak_memory(lambda x: x, X, runs=0)
    with pytest.raises(ValueError, match="`sample_interval` must be > 0"):
        evaluation.peak_memory(lambda x: x, X, sample_interval=0)
    with pytest.raises(TypeError, match="must be a `keras.Model`"):
        evaluation.peak_memory(object(), X)
