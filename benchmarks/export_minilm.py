"""MiniLM through `tfcompress.export.to_tflite` beside the stock TFLiteConverter.

For each target: file size, LiteRT latency at sequence length 32 and 128 with
1 and 2 threads, and the mean-pooled sentence-embedding cosine to the Keras
fp32 model over held-out English sentences, for the stock path
(`TFLiteConverter.from_keras_model` on a functional wrapper, the converter's
recommended route; `from_concrete_functions` on the backbone writes a
weightless file), ours with dynamic shapes, and ours with every shape static
(`batch_size=1, sequence_length=--eval_length`; timed at that length only).
Files are timed in turns (`tfcompress.evaluation.interleaved_latency`), so
their ratios are fair on a shared machine. Ratios are to the stock fp32 file.

    python benchmarks/export_minilm.py [--targets float32,dynamic_int8] [--lengths 64]
"""

import json
import os
import sys
import tempfile
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm_common  # noqa: E402
from common import start_benchmark  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "targets", ["float32", "float16", "dynamic_int8", "int8", "int16x8"], "Targets to convert."
)
flags.DEFINE_list("lengths", ["64", "128"], "Sequence lengths to time.")
flags.DEFINE_list("threads", ["1", "2"], "LiteRT thread counts to time.")
flags.DEFINE_integer("rounds", 5, "Rounds of interleaved timing per (length, threads).")
flags.DEFINE_integer("runs", 10, "Timed runs per file in each round.")
flags.DEFINE_bool(
    "static", True, "Also export ours with batch_size=1, sequence_length=--eval_length."
)
flags.DEFINE_integer("eval_sentences", 128, "Held-out sentences for the embedding cosine.")
flags.DEFINE_integer("calibration_sentences", 64, "Calibration sentences for int8 / int16x8.")
flags.DEFINE_integer("eval_length", 64, "Sequence length of the cosine evaluation.")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.DEFINE_string(
    "output_dir", None, "Keep the .tflite files here (default: a temporary directory)."
)


def stock_convert(backbone, target, calibration):
    """What a user of the stock converter writes, per target."""
    import keras
    import tensorflow as tf

    # A list of named inputs: with a dict, Keras's export for the converter
    # fails and the converter falls back to a legacy path that crashes.
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input(shape=(None,), dtype="int32", name=name) for name in names]
    wrapper = keras.Model(inputs, backbone(dict(zip(names, inputs)))["sequence_output"])
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    if target != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if target == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if target in ("int8", "int16x8"):

        def representative():
            for i in range(len(calibration["token_ids"])):
                # Keyed by name: the converted signature orders inputs by name,
                # so a positional list feeds token ids into the padding mask.
                yield {k: calibration[k][i : i + 1] for k in names}

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if target == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    return converter.convert()


def ours_convert(backbone, target, calibration, sample, static_length=None):
    import keras

    from tfcompress import export

    inputs = {
        name: keras.Input(shape=(None,), dtype="int32", name=name)
        for name in ("token_ids", "segment_ids", "padding_mask")
    }
    model = keras.Model(inputs, backbone(inputs)["sequence_output"])
    result = export.to_tflite(
        model,
        target,
        representative_data=calibration if target in ("int8", "int16x8") else None,
        sample=sample,
        verify=target
        not in ("int8",),  # a calibrated full-int8 MiniLM fails outputs_match by design
        batch_size=1 if static_length else None,
        sequence_length=static_length,
    )
    return result.tflite_bytes


def measure(content, eval_inputs, reference, static):
    """Size and embedding agreement (a static file runs one sentence at a time)."""
    import numpy as np

    from tfcompress import runtime

    model = runtime.load(content)
    rows = len(eval_inputs["token_ids"])
    batches = (
        [{k: v[i : i + 1] for k, v in eval_inputs.items()} for i in range(rows)]
        if static
        else [eval_inputs]
    )
    outputs = [model.run(batch) for batch in batches]
    outputs = np.concatenate(
        [o if not isinstance(o, dict) else next(iter(o.values())) for o in outputs]
    )
    embedding = minilm_common.mean_pool(outputs, eval_inputs["padding_mask"])
    return {
        "size_mb": len(content) / 1e6,
        "backend": model.backend,
        **minilm_common.embedding_agreement(reference, embedding),
    }


def time_all(files, rows, lengths, threads):
    """Interleaved p50 ms of every file at each (length, threads) it accepts."""
    from tfcompress.evaluation import interleaved_latency

    for length in lengths:
        batch = minilm_common.tokenize(minilm_common.sentences(1, offset=1830), length)
        for t in threads:
            keys = {
                " / ".join(key): key for key, (_, fixed) in files.items() if fixed in (None, length)
            }
            models = {name: files[key][0] for name, key in keys.items()}
            results = interleaved_latency(
                models, batch, rounds=FLAGS.rounds, runs=FLAGS.runs, num_threads=t
            )
            for name, result in results.items():
                rows[keys[name]][f"ms_len{length}_t{t}"] = result.p50_ms


def main(argv):
    start_benchmark(argv)
    backbone = minilm_common.load_backbone()
    eval_inputs = minilm_common.tokenize(
        minilm_common.sentences(FLAGS.eval_sentences, offset=1200), FLAGS.eval_length
    )
    calibration = minilm_common.tokenize(
        minilm_common.sentences(FLAGS.calibration_sentences), FLAGS.eval_length
    )
    reference = minilm_common.mean_pool(
        backbone.predict(eval_inputs, verbose=0)["sequence_output"], eval_inputs["padding_mask"]
    )
    sample = {k: v[:4] for k, v in eval_inputs.items()}
    lengths = [int(v) for v in FLAGS.lengths]
    threads = [int(v) for v in FLAGS.threads]
    out_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="export_minilm_")
    rows = {}
    files = {}  # (target, path) -> (file, fixed sequence length or None)
    static = FLAGS.eval_length if FLAGS.static else None
    paths = [
        ("stock", None, lambda t: stock_convert(backbone, t, calibration)),
        ("tfcompress", None, lambda t: ours_convert(backbone, t, calibration, sample)),
    ]
    if static:
        paths.append(
            (
                "tfc static",
                static,
                lambda t: ours_convert(
                    backbone, t, calibration, {k: v[:1] for k, v in sample.items()}, static
                ),
            )
        )
    for target in FLAGS.targets:
        for path_name, fixed, convert in paths:
            key = (target, path_name)
            print(f"converting {target} via {path_name} ...", flush=True)
            started = time.time()
            try:
                content = convert(target)
            except Exception as error:  # report the failure as a row, keep going
                rows[key] = {
                    "target": target,
                    "path": path_name,
                    "error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}",
                }
                print(f"  failed: {rows[key]['error']}", flush=True)
                continue
            path = os.path.join(out_dir, f"minilm_{target}_{path_name.replace(' ', '_')}.tflite")
            with open(path, "wb") as f:
                f.write(content)
            files[key] = (path, fixed)
            rows[key] = {"target": target, "path": path_name, "convert_s": time.time() - started}
            rows[key].update(measure(content, eval_inputs, reference, fixed is not None))
            print(
                f"  {rows[key]['size_mb']:.1f} MB, cosine {rows[key]['cosine_mean']:.4f}",
                flush=True,
            )
    print("timing (interleaved) ...", flush=True)
    time_all(files, rows, lengths, threads)
    rows = list(rows.values())
    print_table(rows, lengths, threads)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)


def print_table(rows, lengths, threads):
    base = next(
        (r for r in rows if r["target"] == "float32" and r["path"] == "stock" and "error" not in r),
        None,
    )
    timing = [f"ms_len{l}_t{t}" for l in lengths for t in threads]
    header = (
        f"{'target':<13}{'path':<11}{'MB':>7}{'size x':>8}"
        + "".join(f"{k[3:]:>14}" for k in timing)
        + f"{'lat x':>7}{'cos mean':>9}{'cos min':>8}{'NN agr':>7}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['target']:<13}{r['path']:<11}  FAILED: {r['error']}")
            continue
        size_x = r["size_mb"] / base["size_mb"] if base else float("nan")
        lat_key = next((k for k in reversed(timing) if k in r), None)
        lat_x = r[lat_key] / base[lat_key] if base and lat_key else float("nan")
        print(
            f"{r['target']:<13}{r['path']:<11}{r['size_mb']:>7.1f}{size_x:>7.2f}x"
            + "".join(f"{r[k]:>14.2f}" if k in r else f"{'-':>14}" for k in timing)
            + f"{lat_x:>6.2f}x{r['cosine_mean']:>9.4f}{r['cosine_min']:>8.4f}{r['nn_agreement']:>7.2f}"
        )
    print(
        "size x and lat x: against the stock fp32 file (lat x at the longest timed length the file "
        "accepts); latency columns are p50 ms (len, threads), files timed in turns; 'tfc static' "
        f"files run only at length {FLAGS.eval_length}; backend "
        f"{next((r['backend'] for r in rows if 'backend' in r), '?')}."
    )


if __name__ == "__main__":
    app.run(main)
