"""tfcompress QAT vs TFMOT QAT on the digits CNN, to int8 TFLite.

For each seed: train the float CNN (Keras 3), then run 3 epochs of QAT from
the same float weights with tfcompress (this process) and with TFMOT (a
tf_keras twin in a subprocess, `qat_tfmot_worker.py`), convert both to
full-integer TFLite (int8 input/output, no representative dataset) and
compare int8 accuracy, Keras/TFLite agreement, file size and QAT step time.

    python benchmarks/qat_vs_tfmot.py --seeds 5
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags
from common import start_benchmark

FLAGS = flags.FLAGS
flags.DEFINE_integer("seeds", 5, "Number of seeds (0..seeds-1).")
flags.DEFINE_integer("float_epochs", 20, "Float training epochs.")
flags.DEFINE_integer("qat_epochs", 3, "QAT epochs.")
flags.DEFINE_integer("batch_size", 32, "Batch size for float training and QAT.")
flags.DEFINE_float("float_learning_rate", 3e-3, "Adam learning rate, float training.")
flags.DEFINE_float("qat_learning_rate", 1e-4, "Adam learning rate, QAT.")
flags.DEFINE_string("output_json", None, "Optional path for the per-seed results.")

_HERE = os.path.dirname(os.path.abspath(__file__))


def _compile(keras, model, learning_rate):
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def _run_seed(seed, workdir):
    import keras
    import numpy as np
    import qat_digits
    import tensorflow as tf

    import tfcompress.quantization as tq
    from tfcompress.cli.digits import build_digits_cnn, load_digits

    keras.utils.set_random_seed(seed)
    data = load_digits(seed, test_fraction=qat_digits.TEST_FRACTION)
    x_train, y_train, x_test, y_test = data
    model = build_digits_cnn(keras, pooled=True)
    _compile(keras, model, FLAGS.float_learning_rate)
    model.fit(x_train, y_train, epochs=FLAGS.float_epochs, batch_size=FLAGS.batch_size, verbose=0)
    float_acc = float(model.evaluate(x_test, y_test, verbose=0)[1])
    weights_path = os.path.join(workdir, f"float_{seed}.npz")
    np.savez(weights_path, **{f"w{i}": w for i, w in enumerate(model.get_weights())})

    qat = tq.quantize_model(model)
    _compile(keras, qat, FLAGS.qat_learning_rate)
    ours = qat_digits.fit_and_evaluate(tf, keras, qat, data, FLAGS.qat_epochs, FLAGS.batch_size)

    out_path = os.path.join(workdir, f"tfmot_{seed}.json")
    subprocess.run(
        [
            sys.executable,
            os.path.join(_HERE, "qat_tfmot_worker.py"),
            f"--weights={weights_path}",
            f"--output={out_path}",
            f"--seed={seed}",
            f"--qat_epochs={FLAGS.qat_epochs}",
            f"--batch_size={FLAGS.batch_size}",
            f"--learning_rate={FLAGS.qat_learning_rate}",
        ],
        check=True,
        cwd=_HERE,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=_HERE),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with open(out_path) as f:
        tfmot = json.load(f)
    return {"seed": seed, "float_accuracy": float_acc, "tfcompress": ours, "tfmot": tfmot}


def _stat(values, scale=1.0):
    import numpy as np

    values = np.asarray(values, dtype="float64") * scale
    return f"{values.mean():7.2f} ± {values.std():4.2f}"


def _table(results):
    import numpy as np

    print(
        f"\nDigits CNN, {len(results)} seeds, {FLAGS.qat_epochs} QAT epochs, int8 TFLite (int8 in/out)"
    )
    header = f"{'':11s} {'float acc %':>15s} {'int8 acc %':>15s} {'agree %':>15s} {'size B':>8s} {'step ms':>15s}"
    print(header)
    float_acc = _stat([r["float_accuracy"] for r in results], 100)
    for name in ("tfcompress", "tfmot"):
        rows = [r[name] for r in results]
        print(
            f"{name:11s} {float_acc:>15s} {_stat([r['accuracy'] for r in rows], 100):>15s} "
            f"{_stat([r['agreement'] for r in rows], 100):>15s} {int(np.mean([r['size_bytes'] for r in rows])):8d} "
            f"{_stat([r['step_ms'] for r in rows]):>15s}"
        )
    ours = {
        k: np.mean([r["tfcompress"][k] for r in results])
        for k in ("accuracy", "size_bytes", "step_ms")
    }
    theirs = {
        k: np.mean([r["tfmot"][k] for r in results]) for k in ("accuracy", "size_bytes", "step_ms")
    }
    checks = [
        (
            "accuracy diff (pts)",
            100 * (ours["accuracy"] - theirs["accuracy"]),
            ">= -0.2",
            lambda v: v >= -0.2,
        ),
        ("size ratio", ours["size_bytes"] / theirs["size_bytes"], "<= 1.05", lambda v: v <= 1.05),
        ("step-time ratio", ours["step_ms"] / theirs["step_ms"], "<= 1.2", lambda v: v <= 1.2),
    ]
    for name, value, target, ok in checks:
        print(f"{name:20s} {value:8.3f}  target {target:8s} {'PASS' if ok(value) else 'MISS'}")
    types = {json.dumps(r["tfcompress"]["tensor_types"], sort_keys=True) for r in results}
    print(f"tfcompress TFLite tensor types: {', '.join(types)}")


def main(argv):
    start_benchmark(argv)
    sys.path.insert(0, _HERE)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(FLAGS.seeds):
            results.append(_run_seed(seed, workdir))
            r = results[-1]
            print(
                f"seed {seed}: float {r['float_accuracy']:.4f}  ours {r['tfcompress']['accuracy']:.4f} "
                f"({r['tfcompress']['step_ms']:.1f} ms/step)  tfmot {r['tfmot']['accuracy']:.4f} "
                f"({r['tfmot']['step_ms']:.1f} ms/step)",
                flush=True,
            )
    _table(results)
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
