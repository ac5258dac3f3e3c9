import numpy as np
import pytest

from tfcompress import runtime
from tfcompress.runtime.benchmark import call_times, summarize


def test_benchmark_percentiles_are_ordered_and_positive(dense_tflite):
    x = np.zeros((4, 6), np.float32)
    result = runtime.benchmark(dense_tflite, x, num_threads=1, warmup=2, runs=30)
    assert isinstance(result, runtime.BenchmarkResult)
    assert 0 < result.p50_ms <= result.p90_ms
    assert result.mean_ms > 0
    # A 2-layer MLP on a batch of 4 runs in microseconds, not seconds.
    assert result.p90_ms < 100
    assert result.runs == 30
    assert result.num_threads == 1
    assert result.backend == "ai_edge_litert"
    assert result.as_dict() == {
        "p50_ms": result.p50_ms,
        "p90_ms": result.p90_ms,
        "mean_ms": result.mean_ms,
        "runs": 30,
        "num_threads": 1,
        "backend": "ai_edge_litert",
    }


def test_benchmark_reloads_a_model_for_another_thread_count(dense_tflite, tmp_path):
    model = runtime.load(dense_tflite, num_threads=1)
    assert runtime.benchmark(model, np.zeros((1, 6), np.float32), runs=3).num_threads == 1
    result = runtime.benchmark(model, np.zeros((1, 6), np.float32), num_threads=2, runs=3)
    assert result.num_threads == 2
    file = tmp_path / "dense.tflite"
    file.write_bytes(dense_tflite)
    assert runtime.benchmark(file, np.zeros((1, 6), np.float32), warmup=0, runs=1).runs == 1


def test_benchmark_times_more_work_as_slower(dense_tflite):
    small = runtime.benchmark(dense_tflite, np.zeros((1, 6), np.float32), runs=30)
    large = runtime.benchmark(dense_tflite, np.zeros((20000, 6), np.float32), runs=30)
    assert large.p50_ms > small.p50_ms


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"warmup": -1}, {"runs": 2.5}])
def test_benchmark_argument_errors(dense_tflite, kwargs):
    with pytest.raises(ValueError, match="must be an int"):
        runtime.benchmark(dense_tflite, np.zeros((1, 6), np.float32), **kwargs)


def test_native_inputs_quantize_once_for_raw_runs(int8_tflite):
    model = runtime.load(int8_tflite)
    x = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    feed = model.native_inputs(x)
    (array,) = feed.values()
    assert array.dtype == np.int8 and array.shape == (2, 6)
    scale, zero_point = model.output_details[0]["quantization"]
    raw = model.run(feed, raw=True)
    assert raw.dtype == np.int8
    np.testing.assert_allclose((raw.astype(np.float32) - zero_point) * scale, model.run(x))


def test_native_inputs_leave_float_inputs_float(dense_tflite):
    model = runtime.load(dense_tflite)
    x = np.ones((1, 6), np.float32)
    (array,) = model.native_inputs(x).values()
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, x)


def test_call_times_and_summarize():
    calls = []
    times = call_times(lambda: calls.append(1), warmup=2, runs=5)
    assert len(calls) == 7 and times.shape == (5,) and (times >= 0).all()
    stats = summarize([1.0, 2.0, 3.0, 4.0])
    assert stats == {"p50_ms": 2.5, "p90_ms": pytest.approx(3.7), "mean_ms": 2.5, "runs": 4}
