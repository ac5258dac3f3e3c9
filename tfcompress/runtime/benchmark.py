"""Latency measurement of a `.tflite` model on this machine."""

import dataclasses
import time

import numpy as np

from tfcompress.runtime.interpreter import TFLiteModel, load


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Latency of `TFLiteModel.run` over repeated runs, in milliseconds.

    Attributes:
        p50_ms: median latency.
        p90_ms: 90th percentile latency.
        mean_ms: mean latency.
        runs: number of timed runs.
        num_threads: interpreter threads (None: the interpreter's default).
        backend: the interpreter that ran it.
    """

    p50_ms: float
    p90_ms: float
    mean_ms: float
    runs: int
    num_threads: int | None
    backend: str

    def as_dict(self):
        """Returns the fields as a plain dict (for JSON or tables)."""
        return dataclasses.asdict(self)


def benchmark(model, inputs, num_threads=None, warmup=5, runs=50, signature=None):
    """Times `model.run(inputs)` after `warmup` untimed runs.

    The time covers what a caller pays per batch through `TFLiteModel.run`:
    input quantization, the invoke and output dequantization.

    Args:
        model: a `TFLiteModel`, a `.tflite` path or flatbuffer bytes.
        inputs: one batch, as accepted by `TFLiteModel.run`.
        num_threads: interpreter threads. A `TFLiteModel` created with another
            thread count is reloaded with this one.
        warmup: untimed runs first (allocation, delegate set-up, caches).
        runs: timed runs; at least 1.
        signature: signature key, for models with several.

    Returns:
        A `BenchmarkResult`.

    Raises:
        ValueError: `warmup < 0` or `runs < 1`, or an invalid model.

    Example:

    ```python
    result = tfcompress.runtime.benchmark("model.tflite", batch, num_threads=1)
    print(result.p50_ms, result.as_dict())
    ```
    """
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"`warmup` must be an int >= 0. Received: warmup={warmup!r}")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"`runs` must be an int >= 1. Received: runs={runs!r}")
    model = with_threads(model, num_threads)
    stats = time_calls(lambda: model.run(inputs, signature=signature), warmup, runs)
    return BenchmarkResult(num_threads=model.num_threads, backend=model.backend, **stats)


def with_threads(model, num_threads):
    """`model` as a `TFLiteModel` with `num_threads` (None keeps a loaded model's).

    Paths and bytes are loaded; a `TFLiteModel` created with another thread
    count is reloaded from its flatbuffer with the same backend.
    """
    if isinstance(model, TFLiteModel):
        if num_threads is not None and num_threads != model.num_threads:
            model = load(model.model_content, num_threads=num_threads, backend=model.backend)
        return model
    return load(model, num_threads=num_threads)


def call_times(fn, warmup, runs):
    """Milliseconds of each of `runs` calls of `fn()`, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        times[i] = (time.perf_counter() - start) * 1000.0
    return times


def summarize(times):
    """`{"p50_ms", "p90_ms", "mean_ms", "runs"}` of per-call times in ms."""
    times = np.asarray(times, dtype=np.float64)
    return {
        "p50_ms": float(np.percentile(times, 50)),
        "p90_ms": float(np.percentile(times, 90)),
        "mean_ms": float(times.mean()),
        "runs": int(times.size),
    }


def time_calls(fn, warmup, runs):
    """`{"p50_ms", "p90_ms", "mean_ms", "runs"}` of `fn()` after `warmup` calls."""
    return summarize(call_times(fn, warmup, runs))
