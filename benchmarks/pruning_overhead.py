"""Step time of pruning against the same model unpruned, in one process.

TFMOT ratios mix pruning cost with tf_keras-vs-Keras 3 speed; this isolates
what `prune_low_magnitude` + `UpdatePruningStep` add to a Keras 3 train step.
Float and pruned runs alternate, `--repeats` times each.

    python benchmarks/pruning_overhead.py [--repeats 3] [--epochs 4]
"""

import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from tfcompress.cli.digits import build_digits_cnn, load_digits  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 3, "Float/pruned pairs to run.")
flags.DEFINE_integer("epochs", 4, "Epochs per run; the first is left out (tracing).")
flags.DEFINE_integer("seed", 0, "Data and initialisation seed.")


def _median_step_ms(pruned):
    import keras
    import numpy as np

    import tfcompress.sparsity as sparsity

    x, y, _, _ = load_digits(FLAGS.seed, test_fraction=0.25, shuffle_train=True)
    keras.utils.set_random_seed(FLAGS.seed)
    model = build_digits_cnn(keras, batch_norm=False, padding="valid")
    callbacks = []
    if pruned:
        steps = FLAGS.epochs * int(np.ceil(len(x) / 32))
        model = sparsity.prune_low_magnitude(
            model, sparsity.PolynomialDecay(0.0, 0.8, 0, steps - 1, frequency=100)
        )
        callbacks = [sparsity.UpdatePruningStep()]
    common.compile_cnn(model, keras)
    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    # The timer wraps UpdatePruningStep, so its per-batch work is counted.
    timer = Timer()
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=FLAGS.epochs,
        shuffle=False,
        verbose=0,
        callbacks=[timer] + callbacks,
    )
    skip = len(times) // FLAGS.epochs
    return float(np.median(times[skip:])) * 1000


def main(argv):
    common.start_benchmark(argv)
    pairs = []
    for repeat in range(FLAGS.repeats):
        float_ms, pruned_ms = _median_step_ms(False), _median_step_ms(True)
        pairs.append((float_ms, pruned_ms))
        print(
            f"repeat {repeat}: float {float_ms:.2f} ms, pruned {pruned_ms:.2f} ms, ratio {pruned_ms / float_ms:.2f}",
            flush=True,
        )
    ratios = sorted(p / f for f, p in pairs)
    print(
        f"median pruned/float step-time ratio: {ratios[len(ratios) // 2]:.2f} over {len(pairs)} pairs"
    )


if __name__ == "__main__":
    app.run(main)
