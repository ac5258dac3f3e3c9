"""Inference latency of a LiteRT model, with Keras timing for comparison."""

import keras

from tfcompress.evaluation import _runner
from tfcompress.runtime.benchmark import BenchmarkResult, time_calls

# One result type for LiteRT and Keras timings, so they share a table.
Latency = BenchmarkResult


def latency(model, inputs, num_threads=None, warmup=5, runs=50):
    """Times one inference call of `model` on `inputs`.

    A LiteRT model (a `.tflite` path, flatbuffer bytes, or a model loaded with
    `tfcompress.runtime.load`) is timed by `tfcompress.runtime.benchmark`. A
    `keras.Model` is timed through `model.predict_on_batch` (its compiled
    `tf.function`, not eager calls), and any other callable by calling it, so
    the original Keras model can sit in the same comparison table. Both
    include converting the outputs to numpy, as the LiteRT path does.

    Args:
        model: a `.tflite` path or bytes, a loaded LiteRT model, a
            `keras.Model` or a callable.
        inputs: one batch of inputs, as the model takes them.
        num_threads: LiteRT interpreter threads; None keeps the runtime
            default. Must be None for Keras models and callables.
        warmup: untimed calls first (tracing, allocation, caches).
        runs: timed calls.

    Returns:
        A `Latency` with `p50_ms`, `p90_ms`, `mean_ms`, `runs`, `num_threads`
        and `backend`.

    Raises:
        ValueError: for bad `warmup`/`runs`, or `num_threads` with a model
            that is not LiteRT.
        TypeError: when `model` cannot be run.

    Example:

    ```python
    fast = tfcompress.evaluation.latency("model_int8.tflite", x[:1], num_threads=1)
    ref = tfcompress.evaluation.latency(keras_model, x[:1])
    print(fast.p50_ms / ref.p50_ms)
    ```
    """
    _runner.check_int(runs, "runs", 1)
    _runner.check_int(warmup, "warmup", 0)
    if isinstance(model, _runner.PATH_TYPES):
        model = _runner.load_litert(model, num_threads=num_threads)
    kind = _runner.model_kind(model)
    if kind == "litert":
        from tfcompress import runtime

        return runtime.benchmark(model, inputs, num_threads=num_threads, warmup=warmup, runs=runs)
    if num_threads is not None:
        raise ValueError(
            "`num_threads` only applies to LiteRT models. TensorFlow sets its "
            "thread pools once per process (`tf.config.threading`, before any op "
            f"runs). Received: num_threads={num_threads!r} for a {kind} model; "
            "pass num_threads=None."
        )
    backend = f"keras-{keras.backend.backend()}" if kind == "keras" else "callable"
    stats = time_calls(lambda: _runner.call_once(model, kind, inputs), warmup, runs)
    return Latency(num_threads=None, backend=backend, **stats)
