"""`tfcompress demo`: compress the bundled digits CNN end to end and report.

Stages (a line each, Keras progress bars while training): train float ->
prune to `--target_sparsity` (the sparsity ramps up over `--prune_epochs`,
then `--recover_epochs` train at the target, so the accuracy recovers from the
last mask update) -> quantization-aware training of the pruned model, its
zeros kept (`quantize_model`'s default for pruned models) -> export
float32 / float16 / dynamic-int8 / int8 TFLite and a C array -> evaluate each
with LiteRT -> print the comparison table, write JSON and a PNG plot.
Every stage's model is saved as `.keras` in `--output_dir`.

Latency: the Keras float model and the four LiteRT models are timed in turns
(`tfcompress.evaluation.interleaved_latency`), each LiteRT model on an input
already in its own dtype, so their ratios do not follow the machine's load.
The Keras size is that of `float_inference.keras`, the float model saved
without optimizer state, so it compares weights with weights.
"""

import os
import time
from typing import NamedTuple

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "output_dir",
    os.path.join("tfcompress_out", "demo"),
    "Where models, TFLite files, the report and the plot go.",
)
flags.DEFINE_integer("epochs", 15, "Float training epochs.")
flags.DEFINE_integer(
    "prune_epochs", 2, "Epochs over which the sparsity ramps up to the target.", lower_bound=1
)
flags.DEFINE_integer(
    "recover_epochs",
    4,
    "Epochs of fine-tuning at the target sparsity after the ramp.",
    lower_bound=0,
)
flags.DEFINE_integer("qat_epochs", 3, "Quantization-aware training epochs (from the pruned model).")
flags.DEFINE_float("target_sparsity", 0.75, "Final fraction of zero weights, in [0, 1).")
flags.DEFINE_integer("seed", 0, "Seed of the data split, initialisation and training order.")
flags.DEFINE_integer(
    "bench_rounds", 10, "Latency rounds; each times every model in turn (batch of 1)."
)
flags.DEFINE_integer("bench_runs", 20, "Timed runs per model in each latency round.")
flags.DEFINE_integer("bench_threads", 1, "LiteRT interpreter threads for the latency column.")
flags.DEFINE_integer(
    "verbose", 1, "Keras progress output: 0 silent, 1 progress bars, 2 a line per epoch."
)


# Training batch size of every stage.
_BATCH = 32


class _Training(NamedTuple):
    """What every training stage fits on."""

    x: object
    y: object
    verbose: int


class _Bench(NamedTuple):
    """How the latency column is measured."""

    rounds: int
    runs: int
    threads: int


class _Float(NamedTuple):
    """Stage 1's result: the trained float model and its inference-only `.keras` size."""

    model: object
    keras_size: dict


class _Exported(NamedTuple):
    """Stage 4's result: `{row name: ExportResult}` of the TFLite files, and the C array."""

    tflite: dict
    c_array: object


class _Evaluated(NamedTuple):
    """Stage 5's result: the comparison table and each model's latency."""

    comparison: object
    latencies: dict


def _stage(number, text):
    print(f"[{number}/6] {text}", flush=True)


def _compile(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _save_for_inference(model, path):
    """Saves an uncompiled copy of `model`: weights and config, no optimizer state."""
    import keras

    # `clone_model` and `model_from_json` both recompile the copy from the
    # serialized compile config, and a compiled model saves its optimizer.
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    copy.save(path)
    return path


def _notes(latencies, bench, c_array):
    """The lines under the table: how latency was measured, the microcontroller build."""
    lite = latencies["float32"]
    arena = "TFLM measured + margin" if c_array.tflm else "estimate"
    return [
        "Accuracy and f1 (macro over the 10 digits) on the held-out images; agreement: same "
        "class as the Keras float model.",
        f"Latency: median of {lite.runs} timed runs per model (batch of 1), {bench.rounds} "
        f"rounds x {bench.runs} runs, models in turns, 1 warmup call per turn, LiteRT inputs "
        f"in the model's dtype; LiteRT {lite.backend} {lite.num_threads} thread(s), Keras "
        f"float via predict_on_batch ({latencies['keras float'].backend}). Keras size: "
        "float_inference.keras (no optimizer state).",
        f"LiteRT backend: {lite.backend}. Flash for the microcontroller build: "
        f"{c_array.flash_bytes:,} bytes, tensor arena: {c_array.arena_bytes:,} bytes ({arena}).",
    ]


def run_demo(
    output_dir,
    epochs=15,
    prune_epochs=2,
    recover_epochs=4,
    qat_epochs=3,
    target_sparsity=0.75,
    seed=0,
    bench_rounds=10,
    bench_runs=20,
    bench_threads=1,
    verbose=1,
):
    """Runs the whole demo and returns the `tfcompress.evaluation.Comparison`.

    Args:
        output_dir: directory for every artefact (created).
        epochs: float training epochs.
        prune_epochs: epochs over which the sparsity ramps up to the target.
        recover_epochs: epochs at the target sparsity after the ramp.
        qat_epochs: quantization-aware training epochs.
        target_sparsity: pruning target in [0, 1).
        seed: random seed.
        bench_rounds: latency rounds; each times every model in turn.
        bench_runs: timed runs per model in each round.
        bench_threads: LiteRT interpreter threads for the latency column.
        verbose: Keras `fit` verbosity.

    Returns:
        The comparison of the Keras float model and the four TFLite files.
    """
    _check_arguments(target_sparsity, bench_rounds, bench_runs, bench_threads)
    import keras

    from tfcompress.cli import digits

    os.makedirs(output_dir, exist_ok=True)
    keras.utils.set_random_seed(seed)
    x_train, y_train, x_test, y_test = digits.load_digits(seed)
    started = time.time()
    train = _Training(x_train, y_train, verbose)
    bench = _Bench(bench_rounds, bench_runs, bench_threads)

    _stage(1, f"Training the float digits CNN ({len(x_train)} train / {len(x_test)} test images)")
    trained = _train_float(train, epochs, output_dir)
    _stage(
        2,
        f"Pruning to {target_sparsity:.0%} sparsity (PolynomialDecay over {prune_epochs} epochs, "
        f"then {recover_epochs} recovery epochs)",
    )
    pruned = _prune(trained.model, train, target_sparsity, prune_epochs, recover_epochs, output_dir)
    _stage(
        3, f"Quantization-aware training of the pruned model, its zeros kept ({qat_epochs} epochs)"
    )
    qat = _quantization_aware(pruned, train, qat_epochs, output_dir)
    _stage(4, "Exporting TFLite (float32, float16, dynamic_int8, int8) and a C array")
    exported = _export(trained.model, pruned, qat, x_test, output_dir)
    _stage(
        5,
        f"Evaluating with LiteRT ({bench.rounds} interleaved rounds x {bench.runs} timed runs "
        "per model)",
    )
    evaluated = _evaluate(trained, exported.tflite, x_test, y_test, bench)
    comparison = evaluated.comparison
    _stage(6, "Report")
    print(comparison.table())
    report_json = os.path.join(output_dir, "report.json")
    plot_png = os.path.join(output_dir, "pareto.png")
    comparison.to_json(report_json)
    comparison.plot(plot_png, metric="accuracy")
    for line in _notes(evaluated.latencies, bench, exported.c_array):
        print(line)
    print(
        f"Report: {report_json}\nPlot:   {plot_png}\nModels: {output_dir}\n"
        f"Done in {time.time() - started:.0f} s."
    )
    return comparison


def _check_arguments(target_sparsity, bench_rounds, bench_runs, bench_threads):
    from tfcompress.core.checks import check_fraction, check_int

    check_fraction(target_sparsity, "target_sparsity")
    # Checked here rather than by the runtime, so a typo fails before training.
    for flag, value in (
        ("bench_rounds", bench_rounds),
        ("bench_runs", bench_runs),
        ("bench_threads", bench_threads),
    ):
        check_int(value, flag, 1, expected="an int >= 1")


def _train_float(train, epochs, output_dir):
    """Stage 1: the trained float CNN and the size of its inference-only `.keras`, a `_Float`."""
    from tfcompress import evaluation
    from tfcompress.cli import digits

    float_model = _compile(digits.build_digits_cnn())
    float_model.fit(train.x, train.y, batch_size=_BATCH, epochs=epochs, verbose=train.verbose)
    float_model.save(os.path.join(output_dir, "float.keras"))
    keras_size = evaluation.model_size(
        _save_for_inference(float_model, os.path.join(output_dir, "float_inference.keras"))
    )
    return _Float(float_model, keras_size)


def _prune(float_model, train, target_sparsity, prune_epochs, recover_epochs, output_dir):
    """Stage 2: the float model pruned to `target_sparsity`, stripped and saved."""
    import numpy as np

    from tfcompress import sparsity

    steps_per_epoch = int(np.ceil(len(train.x) / _BATCH))
    # Steps count from 0: without recovery epochs the final mask update must
    # land on the last step, `steps * epochs - 1`.
    end_step = min(
        prune_epochs * steps_per_epoch, (prune_epochs + recover_epochs) * steps_per_epoch - 1
    )
    schedule = sparsity.PolynomialDecay(
        0.0, target_sparsity, begin_step=0, end_step=end_step, frequency=10
    )
    pruned = _compile(sparsity.prune_low_magnitude(float_model, schedule))
    pruned.fit(
        train.x,
        train.y,
        batch_size=_BATCH,
        epochs=prune_epochs + recover_epochs,
        verbose=train.verbose,
        callbacks=[sparsity.UpdatePruningStep()],
    )
    pruned = sparsity.strip_pruning(pruned)
    pruned.save(os.path.join(output_dir, "pruned.keras"))
    print(sparsity.sparsity_report(pruned).table())
    return pruned


def _quantization_aware(pruned, train, qat_epochs, output_dir):
    """Stage 3: the pruned model after quantization-aware training, saved."""
    from tfcompress import quantization

    qat = _compile(quantization.quantize_model(pruned))
    qat.fit(train.x, train.y, batch_size=_BATCH, epochs=qat_epochs, verbose=train.verbose)
    qat.save(os.path.join(output_dir, "qat.keras"))
    return qat


def _export(float_model, pruned, qat, x_test, output_dir):
    """Stage 4: the four TFLite files and the C array of the int8 one, an `_Exported`."""
    from tfcompress import export

    exports = {
        name: export.to_tflite(
            model,
            target,
            int8_io=target == "int8",
            path=os.path.join(output_dir, filename),
            sample=x_test[:32],
        )
        for name, model, target, filename in (
            ("float32", float_model, "float32", "float32.tflite"),
            ("float16 pruned", pruned, "float16", "float16_pruned.tflite"),
            ("dynamic_int8 pruned", pruned, "dynamic_int8", "dynamic_int8_pruned.tflite"),
            ("int8 pruned+QAT", qat, "int8", "int8_pruned_qat.tflite"),
        )
    }
    c_array = export.to_c_array(
        exports["int8 pruned+QAT"].path,
        name="digits_model",
        path=output_dir,
        sample=x_test,
        reference=qat.predict(x_test, verbose=0),
    )
    for name, result in exports.items():
        print(f"    {name:<20} {result.path} ({result.size_bytes:,} bytes)")
    print(f"    C array: {c_array.header_path}, {c_array.source_path}")
    print("\n".join(f"    {line}" for line in c_array.report_lines()))
    return _Exported(exports, c_array)


def _evaluate(trained, exports, x_test, y_test, bench):
    """Stage 5: the Keras float model and the TFLite files compared, an `_Evaluated`."""
    from tfcompress import evaluation, runtime

    interpreters = {
        name: runtime.load(result.path, num_threads=bench.threads)
        for name, result in exports.items()
    }
    float_model = trained.model
    latencies = evaluation.interleaved_latency(
        {"keras float": float_model, **interpreters},
        x_test[:1],
        rounds=bench.rounds,
        runs=bench.runs,
        warmup=1,
    )
    float_scores = float_model.predict(x_test, verbose=0)
    entries = [_entry("keras float", trained.keras_size, latencies, float_scores)]
    for name, interpreter in interpreters.items():
        scores = interpreter.run(x_test)
        entries.append(
            dict(
                _entry(name, evaluation.model_size(exports[name].path), latencies, scores),
                agreement=evaluation.agreement(float_scores, scores),
            )
        )
    return _Evaluated(evaluation.compare(entries, reference="float32", labels=y_test), latencies)


def _entry(name, size, latencies, predictions):
    return {
        "name": name,
        "raw_bytes": size["raw_bytes"],
        "gzip_bytes": size["gzip_bytes"],
        "latency_ms": latencies[name].p50_ms,
        "predictions": predictions,
    }


def main(argv):
    if len(argv) > 1:
        raise SystemExit(f"tfcompress demo takes only flags; unexpected arguments: {argv[1:]}")
    run_demo(
        FLAGS.output_dir,
        epochs=FLAGS.epochs,
        prune_epochs=FLAGS.prune_epochs,
        recover_epochs=FLAGS.recover_epochs,
        qat_epochs=FLAGS.qat_epochs,
        target_sparsity=FLAGS.target_sparsity,
        seed=FLAGS.seed,
        bench_rounds=FLAGS.bench_rounds,
        bench_runs=FLAGS.bench_runs,
        bench_threads=FLAGS.bench_threads,
        verbose=FLAGS.verbose,
    )
