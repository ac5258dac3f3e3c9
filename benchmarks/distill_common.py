"""Helpers of the distillation benchmarks: machine description, step timing, stats."""

import os
import platform
import time

import numpy as np


def print_machine():
    """Prints the CPU, its vector extensions, cores, load and library versions."""
    import keras
    import tensorflow as tf

    model, flags = platform.processor() or "unknown", []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    break
    except OSError:
        pass
    vector = [f for f in flags if f.startswith(("avx", "fma", "amx")) or f == "sse4_2"]
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    print(
        f"[machine] {model}; {os.cpu_count()} cores; CPU flags: "
        f"{' '.join(vector) or 'n/a'}; load average {', '.join(f'{x:.2f}' for x in load)}"
    )
    print(
        f"[machine] TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"TF threads intra={tf.config.threading.get_intra_op_parallelism_threads()} "
        f"inter={tf.config.threading.get_inter_op_parallelism_threads()} (0 = all cores)"
    )


def step_timer(keras, warmup=10):
    """A callback recording each training step's wall time after `warmup` steps.

    The first steps trace and compile the train function; they are left out.
    """

    class _Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self._seen = 0
            self._began = None

        def on_train_batch_begin(self, batch, logs=None):
            self._began = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self._seen += 1
            if self._seen > warmup:
                self.times.append(time.perf_counter() - self._began)

        def median_ms(self):
            return 1000 * float(np.median(self.times)) if self.times else float("nan")

    return _Timer()


def mean_std(values):
    """`(mean, sample std)`; the std is 0 for a single value."""
    values = np.asarray(values, dtype=np.float64)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), std
