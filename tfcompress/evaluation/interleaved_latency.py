"""Latency of several models timed in turns, so they share the machine's noise."""

import keras

from tfcompress.evaluation import _runner
from tfcompress.evaluation.latency import Latency
from tfcompress.runtime.benchmark import call_times, summarize, with_threads
from tfcompress.runtime.interpreter import TFLiteModel


def _timed_call(model, kind, inputs, num_threads):
    """`(fn, num_threads, backend)`; `fn()` runs `model` once on prepared inputs."""
    if isinstance(model, TFLiteModel):
        model = with_threads(model, num_threads)
        feed = model.native_inputs(inputs)
        return (lambda: model.run(feed, raw=True)), model.num_threads, model.backend
    if kind == "litert":
        backend = getattr(model, "backend", "litert")
        return (lambda: model.run(inputs)), getattr(model, "num_threads", None), backend
    backend = f"keras-{keras.backend.backend()}" if kind == "keras" else "callable"
    return (lambda: _runner.call_once(model, kind, inputs)), None, backend


def interleaved_latency(models, inputs, rounds=10, runs=20, warmup=1, num_threads=None):
    """Times several models on one batch in turns, so their ratios are fair.

    Timing models one after the other lets load that comes and goes (another
    process, CPU frequency) land on one model and not the next; at
    sub-millisecond latencies that moves their ratio by 2x from one run to the
    next. Here each of `rounds` rounds gives every model `warmup` untimed calls
    then `runs` timed calls, the first model rotating from round to round, and
    each model's result summarizes all its `rounds * runs` calls: a slow spell
    is shared instead of charged to whichever model was running.

    A LiteRT model loaded with `tfcompress.runtime` gets `inputs` converted
    once, before timing, to its own input dtypes (float data quantized with
    each quantized input's scale and zero point) and runs with `raw=True`, so
    only the invoke and copying the outputs out are timed: a model with int8
    inputs and outputs pays no numpy (de)quantization the float ones do not.
    Keras models are timed through `predict_on_batch` and other callables by
    calling them, as `latency` does.

    Args:
        models: `{name: model}`, each a `.tflite` path or bytes, a loaded
            LiteRT model, a `keras.Model` or a callable. Results keep this order.
        inputs: one batch, as the float model takes it (quantized per model).
        rounds: number of rounds over all models; at least 1.
        runs: timed calls per model in each round; at least 1.
        warmup: untimed calls per model at the start of each of its turns
            (caches the previous model evicted); at least 0.
        num_threads: LiteRT interpreter threads; None keeps a loaded model's
            and the runtime default for paths. Keras models and callables run
            on TensorFlow's process-wide threads and report `num_threads=None`.

    Returns:
        `{name: Latency}`, each over `rounds * runs` timed calls: `p50_ms` is
        the median and `p90_ms` the 90th percentile of all of them.

    Raises:
        ValueError: empty `models`, or bad `rounds`, `runs` or `warmup`.
        TypeError: `models` is not a dict, a name is not a string, or a model
            cannot be run.

    Example:

    ```python
    results = tfcompress.evaluation.interleaved_latency(
        {"float32": "model.tflite", "int8": "model_int8.tflite"},
        x[:1], rounds=10, runs=20, num_threads=1)
    print(results["int8"].p50_ms / results["float32"].p50_ms)
    ```
    """
    if not isinstance(models, dict):
        raise TypeError(
            "`models` must be a dict mapping a name to a model, e.g. "
            "`{'float32': 'model.tflite', 'int8': 'model_int8.tflite'}`. "
            f"Received: models of type {type(models).__name__}."
        )
    if not models:
        raise ValueError("`models` must hold at least one model. Received: models={}.")
    for name in models:
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"Every key of `models` must be a non-empty string name. Received: {name!r}."
            )
    _runner.check_int(rounds, "rounds", 1)
    _runner.check_int(runs, "runs", 1)
    _runner.check_int(warmup, "warmup", 0)
    calls = {}
    for name, model in models.items():
        if isinstance(model, _runner.PATH_TYPES):
            model = _runner.load_litert(model, num_threads=num_threads)
        kind = _runner.model_kind(model, arg_name=f"models[{name!r}]")
        calls[name] = _timed_call(model, kind, inputs, num_threads)
    names = list(calls)
    times = {name: [] for name in names}
    for round_index in range(rounds):
        start = round_index % len(names)
        for name in names[start:] + names[:start]:
            times[name].extend(call_times(calls[name][0], warmup, runs))
    return {
        name: Latency(num_threads=calls[name][1], backend=calls[name][2], **summarize(times[name]))
        for name in names
    }
