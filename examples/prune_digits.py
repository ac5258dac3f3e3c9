"""Prune a small digits CNN to 80% sparsity and export it to TFLite.

Trains the CNN in float on scikit-learn's 8x8 digits, prunes it by weight
magnitude with `tfcompress.sparsity` (a `PolynomialDecay` schedule, the
`UpdatePruningStep` callback and optionally `PruningSummaries`), strips the
pruning wrappers, prints the sparsity report and test accuracy, exports float32
TFLite files of the float and the pruned model and compares their gzip sizes
(unstructured sparsity pays off in compressed size, not CPU latency), and saves
the pruned model as `.keras`.

Usage:

    python examples/prune_digits.py --target_sparsity=0.8 --summaries_dir=logs
    python examples/prune_digits.py --flagfile=examples/prune_digits.flags
"""

import gzip
import math
import os

from absl import app, flags

from tfcompress.cli.digits import build_digits_cnn, load_digits

_TARGET_SPARSITY = flags.DEFINE_float(
    "target_sparsity", 0.8, "Fraction of each kernel's weights to zero."
)
_FLOAT_EPOCHS = flags.DEFINE_integer(
    "float_epochs", 10, "Epochs of float training before pruning.", lower_bound=1
)
_PRUNE_EPOCHS = flags.DEFINE_integer(
    "prune_epochs",
    4,
    "Epochs over which the sparsity ramps up to the target.",
    lower_bound=1,
)
# At 80% the first convolution keeps 29 of its 144 weights: the model needs
# many more epochs at the target than the ramp takes to win its accuracy back
# (one recovery epoch left it 5 points below float, twelve within half a point).
_RECOVER_EPOCHS = flags.DEFINE_integer(
    "recover_epochs",
    12,
    "Epochs of fine-tuning at the target sparsity after the ramp, so the "
    "accuracy recovers from the last mask update.",
    lower_bound=0,
)
# A mask update every 10 steps (4 an epoch) raises the sparsity in steps the
# model follows; every 100 steps it jumped by a third of the weights at once.
_FREQUENCY = flags.DEFINE_integer("frequency", 10, "Steps between mask updates.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the split, order and weights.")
# Not `--log_dir`: absl.logging already defines that flag for its log files.
_SUMMARIES_DIR = flags.DEFINE_string(
    "summaries_dir",
    None,
    "TensorBoard directory for PruningSummaries; no summaries if unset.",
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(".", "tfcompress_out", "prune_digits"),
    "Directory for the TFLite files and the pruned `.keras` model.",
)


def compile_model(model, keras):
    model.compile(
        optimizer=keras.optimizers.Adam(_LEARNING_RATE.value),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def export_tflite(model, path):
    """Writes a float32 TFLite file; returns its size after gzip -9."""
    from tfcompress.export import to_tflite

    to_tflite(model, "float32", path=path)
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import keras

    from tfcompress import sparsity

    keras.utils.set_random_seed(_SEED.value)
    out_dir = _OUTPUT_DIR.value
    os.makedirs(out_dir, exist_ok=True)

    x_train, y_train, x_test, y_test = load_digits(_SEED.value, test_fraction=0.25)
    print(f"[data] {len(x_train)} training and {len(x_test)} test digits")

    model = build_digits_cnn(keras, batch_norm=False, padding="valid")
    compile_model(model, keras)
    model.fit(
        x_train,
        y_train,
        batch_size=_BATCH_SIZE.value,
        epochs=_FLOAT_EPOCHS.value,
        verbose=0,
    )
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    print(f"[float] test accuracy {float_accuracy:.4f}")

    steps_per_epoch = math.ceil(len(x_train) / _BATCH_SIZE.value)
    epochs = _PRUNE_EPOCHS.value + _RECOVER_EPOCHS.value
    # Steps count from 0: without recovery epochs the last step, where the
    # schedule's final update must happen, is `steps * epochs - 1`.
    end_step = min(steps_per_epoch * _PRUNE_EPOCHS.value, steps_per_epoch * epochs - 1)
    schedule = sparsity.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=_TARGET_SPARSITY.value,
        begin_step=0,
        end_step=end_step,
        frequency=_FREQUENCY.value,
    )
    pruned = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    compile_model(pruned, keras)
    callbacks = [sparsity.UpdatePruningStep()]
    if _SUMMARIES_DIR.value:
        callbacks.append(sparsity.PruningSummaries(log_dir=_SUMMARIES_DIR.value))
    pruned.fit(
        x_train,
        y_train,
        batch_size=_BATCH_SIZE.value,
        epochs=epochs,
        verbose=0,
        callbacks=callbacks,
    )
    print(f"[prune] {steps_per_epoch * epochs} steps with {schedule}")

    stripped = sparsity.strip_pruning(pruned)
    report = sparsity.sparsity_report(stripped)
    print(f"[strip] sparsity report:\n{report.table()}")
    print(f"[strip] overall sparsity {report.overall_sparsity:.4f}")

    compile_model(stripped, keras)
    pruned_accuracy = stripped.evaluate(x_test, y_test, verbose=0)[1]
    print(f"[evaluate] test accuracy {pruned_accuracy:.4f} (float {float_accuracy:.4f})")

    float_gzip = export_tflite(model, os.path.join(out_dir, "float.tflite"))
    pruned_path = os.path.join(out_dir, "pruned.tflite")
    pruned_gzip = export_tflite(stripped, pruned_path)
    print(
        f"[tflite] {pruned_path}: {pruned_gzip} bytes gzipped, float "
        f"{float_gzip} bytes ({pruned_gzip / float_gzip:.2f}x)"
    )

    keras_path = os.path.join(out_dir, "pruned.keras")
    stripped.save(keras_path)
    print(f"[save] {keras_path}")


if __name__ == "__main__":
    app.run(main)
