"""Shared helpers of the benchmarks: the start of `main`, the small CNN, timing, I/O.

Nothing here imports Keras or TensorFlow at module level: the builders take the
Keras module (`keras` or `tf_keras`) as an argument, so a baseline that runs
under `TF_USE_LEGACY_KERAS=1` (TFMOT, in a subprocess) uses the same helpers
as the in-process Keras 3 side.
"""

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
from absl import app, logging

from tfcompress.cli.digits import build_digits_cnn


def start_benchmark(argv):
    """What a benchmark's `main(argv)` does first.

    Refuses positional arguments (flags only), quiets absl's INFO logs and
    Python warnings so the tables stay readable, and prints the machine (CPU
    and its vector extensions, cores, load, TensorFlow and Keras versions):
    int8-vs-float ratios depend on it.

    Raises:
        app.UsageError: for positional arguments.
    """
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore")
    from distill_common import print_machine

    print_machine()


def compile_cnn(model, keras_module, learning_rate=1e-3):
    """Compiles `model` with Adam and sparse categorical cross-entropy."""
    model.compile(
        optimizer=keras_module.optimizers.Adam(learning_rate=learning_rate),
        loss=keras_module.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model, x, y):
    """Top-1 accuracy of a logits model, computed in NumPy."""
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def save_weights_npz(model, path):
    """Saves `model.get_weights()` in order as `arr_0`, `arr_1`, ..."""
    np.savez(path, *model.get_weights())


def read_weights_npz(path):
    """Reads the list of arrays written by `save_weights_npz`, in order."""
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def load_weights_npz(model, path):
    """Loads weights saved by `save_weights_npz` into `model`, by order."""
    model.set_weights(read_weights_npz(path))


def kernel_sparsity(model, kernel_layer_types=("Conv2D", "Dense")):
    """Fraction of zeros over the kernels of the given layer classes.

    Computed from the weights alone, so it reads a stripped Keras 3 model and
    a stripped tf_keras model the same way.

    Returns:
        `(overall, per_layer)`: the overall fraction and a dict layer name ->
        fraction.
    """
    zeros = total = 0
    per_layer = {}
    for layer in model.layers:
        if type(layer).__name__ not in kernel_layer_types:
            continue
        kernel = np.asarray(layer.kernel)
        layer_zeros = int(np.sum(kernel == 0))
        per_layer[layer.name] = layer_zeros / kernel.size
        zeros += layer_zeros
        total += kernel.size
    return zeros / total, per_layer


def tflite_float32(model, path):
    """Converts a Keras model with the stock float32 TFLite converter.

    Imports `tensorflow` here, after the caller chose its Keras, so the
    converter sees a Keras 3 model in-process and a tf_keras model under
    `TF_USE_LEGACY_KERAS=1`.

    Returns:
        The size of the written file in bytes.
    """
    import tensorflow as tf

    # Keras 3's export prints its SavedModel signature; keep tables readable.
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    with open(path, "wb") as f:
        f.write(flatbuffer)
    return len(flatbuffer)


def gzip_size(path):
    """Size in bytes of the file at `path` after `gzip -9`."""
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


def make_step_timer(keras_module, skip_epochs=1):
    """Creates a callback pair that times each training step.

    Pass `[timer, *other_callbacks, timer.stop]` to `fit`: callbacks run in
    list order, so the measured span holds the train step plus every other
    callback's per-batch work (e.g. a pruning callback's mask updates), which
    is what a user pays per step.

    Args:
        keras_module: `keras` or `tf_keras`, whose `Callback` is subclassed.
        skip_epochs: leading epochs left out of `timer.times` (tracing warmup).

    Returns:
        The start callback; `timer.stop` is the end callback and
        `timer.times` the per-step durations in seconds; `timer.median()`
        and `timer.percentile(q)` summarize them.
    """

    class _Stop(keras_module.callbacks.Callback):
        def __init__(self, start):
            super().__init__()
            self._start = start

        def on_train_batch_end(self, batch, logs=None):
            if self._start.epoch >= skip_epochs:
                self._start.times.append(time.perf_counter() - self._start.began)

    class _StepTimer(keras_module.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []
            self.epoch = 0
            self.began = None
            self.stop = _Stop(self)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            self.began = time.perf_counter()

        def median(self):
            return self.percentile(50)

        def percentile(self, q):
            return float(np.percentile(self.times, q)) if self.times else float("nan")

    return _StepTimer()


def prune_and_fit(
    keras_module,
    sparsity,
    weights_path,
    data,
    *,
    end_step,
    final_sparsity,
    frequency,
    learning_rate,
    batch_size,
    epochs,
):
    """Prunes the CNN with `sparsity.prune_low_magnitude` and trains it.

    Runs unchanged on `tfmot.sparsity.keras` with `tf_keras` and on
    `tfcompress.sparsity` with `keras`, since the APIs share their names.

    Returns:
        `(stripped model, step timer)`.
    """
    x_train, y_train = data[0], data[1]
    model = build_digits_cnn(keras_module, batch_norm=False, padding="valid")
    load_weights_npz(model, weights_path)
    pruned = sparsity.prune_low_magnitude(
        model,
        pruning_schedule=sparsity.PolynomialDecay(
            initial_sparsity=0.0,
            final_sparsity=final_sparsity,
            begin_step=0,
            end_step=end_step,
            frequency=frequency,
        ),
    )
    compile_cnn(pruned, keras_module, learning_rate)
    timer = make_step_timer(keras_module)
    pruned.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[timer, sparsity.UpdatePruningStep(), timer.stop],
    )
    return sparsity.strip_pruning(pruned), timer


def run_json_subprocess(argv, output_path, timeout=1800, env=None):
    """Runs `python *argv` and returns the JSON object it wrote to a file.

    Args:
        argv: script path and arguments, run with this interpreter.
        output_path: where the child writes its JSON result.
        timeout: seconds before the child is killed.
        env: extra environment variables for the child.

    Returns:
        The decoded JSON object.

    Raises:
        RuntimeError: if the child fails; its stderr tail is in the message.
    """
    child_env = dict(os.environ)
    child_env.update(env or {})
    result = subprocess.run(
        [sys.executable, *argv],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-30:])
        raise RuntimeError(
            f"Subprocess {argv[0]} exited with code {result.returncode}. "
            f"Last lines of its stderr:\n{tail}"
        )
    with open(output_path, encoding="utf-8") as f:
        return json.load(f)


def format_table(headers, rows):
    """Formats rows as a plain-text table with aligned columns.

    Floats are shown with 4 decimals; everything else with `str`.
    """

    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h)
        for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in text_rows]
    return "\n".join(lines)
