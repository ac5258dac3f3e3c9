import sys
import time
import types

import keras
import numpy as np
import pytest

import tfcompress
from tfcompress import evaluation

from .fakes import FakeLiteRT

X = np.ones((1, 4), dtype="float32")


@pytest.fixture
def fake_runtime(monkeypatch):
    """Replaces `tfcompress.runtime` with a recorder of load/benchmark calls."""
    calls = {}

    def result():
        return evaluation.Latency(1.5, 2.5, 1.75, calls["runs"], calls["num_threads"], "xnnpack")

    def load(path_or_bytes, num_threads=None):
        calls["loaded"] = (path_or_bytes, num_threads)
        return FakeLiteRT(lambda x: x)

    def benchmark(model, inputs, num_threads=None, warmup=5, runs=50):
        calls.update(model=model, num_threads=num_threads, warmup=warmup, runs=runs)
        return result()

    module = types.SimpleNamespace(load=load, benchmark=benchmark)
    monkeypatch.setitem(sys.modules, "tfcompress.runtime", module)
    monkeypatch.setattr(tfcompress, "runtime", module, raising=False)
    return calls


def test_keras_model_is_timed_through_predict_on_batch():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    result = evaluation.latency(model, X, warmup=2, runs=7)
    assert result.runs == 7
    assert result.backend == "keras-tensorflow"
    assert result.num_threads is None
    assert 0 < result.p50_ms <= result.p90_ms
    assert result.mean_ms > 0
    assert set(result.as_dict()) == {
        "p50_ms",
        "p90_ms",
        "mean_ms",
        "runs",
        "num_threads",
        "backend",
    }


def test_callable_timing_measures_the_call():
    result = evaluation.latency(lambda x: time.sleep(0.004), X, warmup=0, runs=5)
    assert result.backend == "callable"
    assert 4.0 <= result.p50_ms < 100.0


def test_litert_model_goes_through_runtime_benchmark(fake_runtime):
    model = FakeLiteRT(lambda x: x)
    result = evaluation.latency(model, X, num_threads=2, warmup=1, runs=9)
    assert fake_runtime["model"] is model
    assert (fake_runtime["num_threads"], fake_runtime["warmup"], fake_runtime["runs"]) == (2, 1, 9)
    assert result == evaluation.Latency(1.5, 2.5, 1.75, 9, 2, "xnnpack")


def test_path_is_loaded_with_num_threads(fake_runtime):
    evaluation.latency("model.tflite", X, num_threads=1, runs=3)
    assert fake_runtime["loaded"] == ("model.tflite", 1)
    evaluation.latency(b"TFL3", X)
    assert fake_runtime["loaded"] == (b"TFL3", None)


def test_errors():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="`runs` must be an int >= 1. Received: runs=0"):
        evaluation.latency(model, X, runs=0)
    with pytest.raises(ValueError, match="`warmup` must be an int >= 0"):
        evaluation.latency(model, X, warmup=-1)
    with pytest.raises(ValueError, match="`num_threads` only applies to LiteRT"):
        evaluation.latency(model, X, num_threads=2)
    with pytest.raises(TypeError, match="must be a `keras.Model`"):
        evaluation.latency(42, X)
