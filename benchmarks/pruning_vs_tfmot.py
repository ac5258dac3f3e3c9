"""Benchmark: tfcompress pruning (Keras 3) against TFMOT (tf_keras).

For each seed, trains the small digits CNN in float once (Keras 3), then
prunes copies of those weights with the same `PolynomialDecay` 0 -> 0.8
schedule, the same data order and the same optimizer through
`tfcompress.sparsity` (in this process) and through
`tensorflow_model_optimization` (in a subprocess, see
`_tfmot_pruning_baseline.py`). Compares final kernel sparsity, test accuracy,
gzip -9 size of each stripped model's float32 TFLite file, and the median
training step time; prints a table per seed and a PASS/FAIL summary. It is a
benchmark: it always exits 0.

Columns: `gzip_B` is each side's own stripped model converted (Keras 3 and
tf_keras flatbuffers differ by ~1 KB of names); `gzip_B_k3` is the same weights
in a fresh Keras 3 twin, one conversion path for all, and is what the gzip
ratio uses; `step_ms` is the median training step time without the first
epoch (the float row times float training).

Usage:

    python benchmarks/pruning_vs_tfmot.py --seeds=3 --epochs=4
    python benchmarks/pruning_vs_tfmot.py --recovery_epochs=1
"""

import json
import math
import os
import statistics
import tempfile

import common
from absl import app, flags

from tfcompress.cli.digits import build_digits_cnn, load_digits

_SEEDS = flags.DEFINE_integer("seeds", 3, "Number of seeds; seeds 0..N-1 are run.", lower_bound=1)
_EPOCHS = flags.DEFINE_integer(
    "epochs",
    4,
    "Pruning epochs; the schedule's end_step is epochs x steps per epoch. "
    "The first epoch is left out of the step time (tracing warmup).",
    lower_bound=2,
)
_RECOVERY_EPOCHS = flags.DEFINE_integer(
    "recovery_epochs",
    0,
    "Epochs trained after end_step at the final sparsity (both sides). With "
    "0 the schedule ends at the total number of steps, TFMOT's usual recipe.",
    lower_bound=0,
)
_FLOAT_EPOCHS = flags.DEFINE_integer(
    "float_epochs", 10, "Epochs of float training before pruning.", lower_bound=1
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Training batch size.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_FINAL_SPARSITY = flags.DEFINE_float(
    "final_sparsity", 0.8, "Target sparsity of the PolynomialDecay schedule."
)
_FREQUENCY = flags.DEFINE_integer(
    "frequency", 100, "Steps between mask updates (TFMOT's default is 100)."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(tempfile.gettempdir(), "tfcompress_bench", "pruning_vs_tfmot"),
    "Directory for weights, TFLite files and the JSON results.",
)
_JSON = flags.DEFINE_string(
    "json",
    None,
    "Path of the JSON results; default <output_dir>/pruning_vs_tfmot.json.",
)

_SPARSITY_TOLERANCE = 0.005
_MAX_GZIP_RATIO = 1.0
_MAX_STEP_TIME_RATIO = 1.2
_BASELINE = os.path.join(os.path.dirname(__file__), "_tfmot_pruning_baseline.py")


def _train_float(keras, seed, data, out_dir):
    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(seed)
    model = build_digits_cnn(keras, batch_norm=False, padding="valid")
    common.compile_cnn(model, keras, _LEARNING_RATE.value)
    timer = common.make_step_timer(keras)
    model.fit(
        x_train,
        y_train,
        batch_size=_BATCH_SIZE.value,
        epochs=_FLOAT_EPOCHS.value,
        shuffle=False,
        verbose=0,
        callbacks=[timer, timer.stop],
    )
    weights_path = os.path.join(out_dir, f"float_seed{seed}.npz")
    common.save_weights_npz(model, weights_path)
    tflite_path = os.path.join(out_dir, f"float_seed{seed}.tflite")
    tflite_bytes = common.tflite_float32(model, tflite_path)
    gzip_bytes = common.gzip_size(tflite_path)
    return weights_path, {
        "sparsity": common.kernel_sparsity(model)[0],
        "accuracy": common.accuracy(model, x_test, y_test),
        "tflite_bytes": tflite_bytes,
        "gzip_bytes": gzip_bytes,
        "gzip_bytes_same_path": gzip_bytes,
        "step_time_s": timer.median(),
    }


def _prune_ours(keras, sparsity, seed, data, weights_path, end_step, out_dir):
    x_train, y_train, x_test, y_test = data
    keras.utils.set_random_seed(seed)
    stripped, timer = common.prune_and_fit(
        keras,
        sparsity,
        weights_path,
        data,
        end_step=end_step,
        final_sparsity=_FINAL_SPARSITY.value,
        frequency=_FREQUENCY.value,
        learning_rate=_LEARNING_RATE.value,
        batch_size=_BATCH_SIZE.value,
        epochs=_EPOCHS.value + _RECOVERY_EPOCHS.value,
    )
    tflite_path = os.path.join(out_dir, f"tfcompress_seed{seed}.tflite")
    overall, per_layer = common.kernel_sparsity(stripped)
    return {
        "sparsity": overall,
        "report_sparsity": sparsity.sparsity_report(stripped).overall_sparsity,
        "per_layer_sparsity": per_layer,
        "accuracy": common.accuracy(stripped, x_test, y_test),
        "tflite_bytes": common.tflite_float32(stripped, tflite_path),
        "gzip_bytes": common.gzip_size(tflite_path),
        "gzip_bytes_same_path": _convert_twin(
            keras,
            stripped.get_weights(),
            os.path.join(out_dir, f"tfcompress_seed{seed}_twin.tflite"),
        ),
        "step_time_s": timer.median(),
        "step_time_p10_s": timer.percentile(10),
        "timed_steps": len(timer.times),
    }


def _convert_twin(keras, weights, tflite_path):
    """Converts a fresh Keras 3 CNN holding `weights`; returns gzip bytes.

    Both sides' weights go through this one conversion path, so their gzip
    sizes differ only by the weights (tf_keras and Keras 3 models convert to
    flatbuffers that differ by ~1 KB of names and signatures).
    """
    twin = build_digits_cnn(keras, batch_norm=False, padding="valid")
    twin.set_weights(weights)
    common.tflite_float32(twin, tflite_path)
    return common.gzip_size(tflite_path)


def _prune_tfmot(keras, seed, weights_path, out_dir):
    json_path = os.path.join(out_dir, f"tfmot_seed{seed}.json")
    argv = [
        _BASELINE,
        f"--seed={seed}",
        f"--weights={weights_path}",
        f"--epochs={_EPOCHS.value}",
        f"--recovery_epochs={_RECOVERY_EPOCHS.value}",
        f"--batch_size={_BATCH_SIZE.value}",
        f"--learning_rate={_LEARNING_RATE.value}",
        f"--final_sparsity={_FINAL_SPARSITY.value}",
        f"--frequency={_FREQUENCY.value}",
        f"--output_dir={out_dir}",
        f"--json={json_path}",
    ]
    result = common.run_json_subprocess(argv, json_path, env={"TF_USE_LEGACY_KERAS": "1"})
    result["gzip_bytes_same_path"] = _convert_twin(
        keras,
        common.read_weights_npz(result["stripped_weights"]),
        os.path.join(out_dir, f"tfmot_seed{seed}_twin.tflite"),
    )
    return result


def _seed_table(seed, results):
    rows = [
        [
            name,
            r["sparsity"],
            r["accuracy"],
            r["tflite_bytes"],
            r["gzip_bytes"],
            r["gzip_bytes_same_path"],
            f"{1e3 * r['step_time_s']:.2f}",
        ]
        for name, r in results.items()
    ]
    headers = [
        "model",
        "sparsity",
        "test_acc",
        "tflite_B",
        "gzip_B",
        "gzip_B_k3",
        "step_ms",
    ]
    return f"Seed {seed}\n" + common.format_table(headers, rows)


def _summarize(per_seed):
    def mean(model, key):
        return statistics.fmean(s[model][key] for s in per_seed)

    def mean_ratio(key):
        return statistics.fmean(s["tfcompress"][key] / s["tfmot"][key] for s in per_seed)

    target = _FINAL_SPARSITY.value
    summary = {
        "mean_sparsity_tfcompress": mean("tfcompress", "sparsity"),
        "mean_sparsity_tfmot": mean("tfmot", "sparsity"),
        "mean_accuracy_float": mean("float", "accuracy"),
        "mean_accuracy_tfcompress": mean("tfcompress", "accuracy"),
        "mean_accuracy_tfmot": mean("tfmot", "accuracy"),
        "gzip_ratio": mean_ratio("gzip_bytes_same_path"),
        "gzip_ratio_native_converters": mean_ratio("gzip_bytes"),
        "step_time_ratio": mean_ratio("step_time_s"),
        "step_time_ratio_p10": mean_ratio("step_time_p10_s"),
    }
    checks = {
        f"sparsity {target:.2f} +/- {_SPARSITY_TOLERANCE} (every seed)": all(
            abs(s["tfcompress"]["sparsity"] - target) <= _SPARSITY_TOLERANCE for s in per_seed
        ),
        "accuracy tfcompress >= TFMOT (means)": (
            summary["mean_accuracy_tfcompress"] >= summary["mean_accuracy_tfmot"]
        ),
        f"gzip ratio tfcompress/TFMOT <= {_MAX_GZIP_RATIO}": (
            summary["gzip_ratio"] <= _MAX_GZIP_RATIO
        ),
        f"step time ratio tfcompress/TFMOT <= {_MAX_STEP_TIME_RATIO}": (
            summary["step_time_ratio"] <= _MAX_STEP_TIME_RATIO
        ),
    }
    return summary, checks


def _summary_text(summary, checks, step_time_ratios):
    lines = ["Summary (means over seeds; ratios are means of per-seed ratios)"]
    lines += [f"  {key}: {value:.4f}" for key, value in summary.items()]
    lines.append(
        "  step_time_ratio per seed: "
        + ", ".join(f"{r:.3f}" for r in step_time_ratios)
        + " (medians; the p10 ratio is less sensitive to other load)"
    )
    lines += [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in checks.items()]
    verdict = "all targets met" if all(checks.values()) else "targets missed"
    lines.append(f"Overall: {verdict}")
    return "\n".join(lines)


def main(argv):
    common.start_benchmark(argv)
    # Keras 3 is imported only here, after flag parsing, and never in the same
    # process as TFMOT (which would switch tf.keras to tf_keras).
    import keras

    from tfcompress import sparsity

    out_dir = _OUTPUT_DIR.value
    os.makedirs(out_dir, exist_ok=True)
    json_path = _JSON.value or os.path.join(out_dir, "pruning_vs_tfmot.json")
    per_seed = []
    for seed in range(_SEEDS.value):
        data = load_digits(seed, test_fraction=0.25, shuffle_train=True)
        end_step = math.ceil(len(data[0]) / _BATCH_SIZE.value) * _EPOCHS.value
        print(f"[seed {seed}] float training ({_FLOAT_EPOCHS.value} epochs)")
        weights_path, float_result = _train_float(keras, seed, data, out_dir)
        results = {"float": float_result}
        # Alternate which side runs first, so drifting load on a shared
        # machine does not always favour the same side's step time.
        sides = ("tfcompress", "tfmot")
        for side in sides if seed % 2 == 0 else reversed(sides):
            print(f"[seed {seed}] {side} pruning, end_step={end_step}")
            if side == "tfcompress":
                results[side] = _prune_ours(
                    keras, sparsity, seed, data, weights_path, end_step, out_dir
                )
            else:
                results[side] = _prune_tfmot(keras, seed, weights_path, out_dir)
        results = {name: results[name] for name in ("float", "tfcompress", "tfmot")}
        per_seed.append(results)
        print(_seed_table(seed, results), flush=True)

    summary, checks = _summarize(per_seed)
    ratios = [s["tfcompress"]["step_time_s"] / s["tfmot"]["step_time_s"] for s in per_seed]
    print(_summary_text(summary, checks, ratios))
    config = {
        name: flags.FLAGS[name].value
        for name in (
            "seeds",
            "epochs",
            "recovery_epochs",
            "float_epochs",
            "batch_size",
            "learning_rate",
            "final_sparsity",
            "frequency",
        )
    }
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "config": config,
                "per_seed": per_seed,
                "summary": summary,
                "checks": checks,
            },
            f,
            indent=2,
        )
    print(f"Results written to {json_path}")


if __name__ == "__main__":
    app.run(main)
