"""Peak resident memory while running a model, measured from the process."""

import dataclasses
import gc
import os
import resource
import sys
import threading
import tracemalloc

from tfcompress.evaluation import _runner


@dataclasses.dataclass(frozen=True)
class MemoryUsage:
    """Memory seen while a model ran. All sizes in bytes.

    Attributes:
        baseline_rss_bytes: resident set size just before the run (None where
            the current RSS cannot be read, i.e. outside Linux).
        peak_rss_bytes: the highest RSS seen during the run (outside Linux:
            the process's lifetime high-water mark).
        rss_delta_bytes: `peak_rss_bytes - baseline_rss_bytes`: what the run
            added on top of what the process already held.
        python_peak_bytes: peak of allocations `tracemalloc` sees during the
            run (Python objects and numpy buffers; not TensorFlow or LiteRT
            native memory).
        exact_peak: True when the peak is the kernel's high-water mark
            (`ru_maxrss` rose during the run); False when it comes from sampling
            the RSS every `sample_interval` seconds, which can miss short spikes.
    """

    baseline_rss_bytes: int | None
    peak_rss_bytes: int
    rss_delta_bytes: int | None
    python_peak_bytes: int
    exact_peak: bool

    def as_dict(self):
        return dataclasses.asdict(self)


def _current_rss():
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _max_rss():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


class _Sampler(threading.Thread):
    def __init__(self, interval):
        super().__init__(daemon=True)
        self.interval = interval
        self.peak = _current_rss() or 0
        self.done = threading.Event()

    def run(self):
        while not self.done.wait(self.interval):
            self.peak = max(self.peak, _current_rss() or 0)


def peak_memory(model, inputs, runs=1, sample_interval=0.001):
    """Measures how much resident memory running `model` adds to the process.

    This is a process-level measurement: anything else the process does during
    the run (other threads) is counted, memory freed before the run but kept
    by allocators is reused without showing, and memory the process already
    held (a Keras model's weights, an interpreter loaded earlier) is not
    counted. For a `.tflite` path or bytes, loading is inside the
    measurement, because the weights and tensor arena are most of a LiteRT
    model's memory; for an already loaded model only the runs are measured.
    For a fair comparison measure each model in a fresh process.

    Args:
        model: a `.tflite` path or bytes, a loaded LiteRT model, a
            `keras.Model` or a callable.
        inputs: one batch of inputs, as the model takes them.
        runs: how many times to run the model.
        sample_interval: seconds between RSS samples.

    Returns:
        A `MemoryUsage`.

    Raises:
        ValueError: when `runs` or `sample_interval` is not positive.
        TypeError: when `model` cannot be run.

    Example:

    ```python
    usage = tfcompress.evaluation.peak_memory("model.tflite", x[:1])
    print(usage.rss_delta_bytes / 1e6, "MB")
    ```
    """
    _runner.check_int(runs, "runs", 1)
    if not sample_interval > 0:
        raise ValueError(f"`sample_interval` must be > 0 seconds. Received: {sample_interval!r}.")
    is_path = isinstance(model, _runner.PATH_TYPES)
    kind = None if is_path else _runner.model_kind(model)
    gc.collect()
    baseline, max_before = _current_rss(), _max_rss()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    python_before = tracemalloc.get_traced_memory()[0]
    sampler = _Sampler(sample_interval)
    sampler.start()
    try:
        if is_path:
            model = _runner.load_litert(model)
            kind = _runner.model_kind(model)
        for _ in range(runs):
            outputs = _runner.call_once(model, kind, inputs)
        # Read while the last outputs are alive; merged after the sampler stops.
        end_rss = _current_rss() or 0
        del outputs
    finally:
        sampler.done.set()
        sampler.join()
        python_peak = tracemalloc.get_traced_memory()[1] - python_before
        if not was_tracing:
            tracemalloc.stop()
    max_after = _max_rss()
    exact = max_after > max_before
    peak = max(sampler.peak, end_rss)
    # Without /proc the high-water mark is the only number there is.
    if exact or baseline is None:
        peak = max(peak, max_after)
    return MemoryUsage(
        baseline_rss_bytes=baseline,
        peak_rss_bytes=peak,
        rss_delta_bytes=None if baseline is None else peak - baseline,
        python_peak_bytes=max(python_peak, 0),
        exact_peak=exact,
    )
