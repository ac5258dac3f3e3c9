"""MiniLM through `tfcompress.export.to_tflite` beside the stock TFLiteConverter.

For each target: file size, LiteRT latency at sequence length 32 and 128 with
1 and 2 threads, and the mean-pooled sentence-embedding cosine to the Keras
fp32 model over held-out English sentences, for our path and for the stock
path (`TFLiteConverter.from_keras_model` on a functional wrapper, the
converter's recommended route; `from_concrete_functions` on the backbone
writes a weightless file). Ratios are to the stock fp32 file.

    python benchmarks/export_minilm.py [--targets float32,dynamic_int8] [--runs 30]
"""

import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm_common  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("targets", ["float32", "float16", "dynamic_int8", "int8", "int16x8"], "Targets to convert.")
flags.DEFINE_list("lengths", ["32", "128"], "Sequence lengths to time.")
flags.DEFINE_list("threads", ["1", "2"], "LiteRT thread counts to time.")
flags.DEFINE_integer("runs", 30, "Timed runs per (length, threads).")
flags.DEFINE_integer("eval_sentences", 128, "Held-out sentences for the embedding cosine.")
flags.DEFINE_integer("calibration_sentences", 64, "Calibration sentences for int8 / int16x8.")
flags.DEFINE_integer("eval_length", 64, "Sequence length of the cosine evaluation.")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.DEFINE_string("output_dir", None, "Keep the .tflite files here (default: a temporary directory).")


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


def ours_convert(backbone, target, calibration, sample):
    import keras

    from tfcompress import export

    inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in ("token_ids", "segment_ids", "padding_mask")}
    model = keras.Model(inputs, backbone(inputs)["sequence_output"])
    result = export.to_tflite(
        model,
        target,
        representative_data=calibration if target in ("int8", "int16x8") else None,
        sample=sample,
        verify=target not in ("int8",),  # a calibrated full-int8 MiniLM fails outputs_match by design
    )
    return result.tflite_bytes


def measure(content, eval_inputs, reference, lengths, threads, runs):
    from tfcompress import runtime

    model = runtime.load(content)
    outputs = model.run(eval_inputs)
    outputs = outputs if not isinstance(outputs, dict) else next(iter(outputs.values()))
    embedding = minilm_common.mean_pool(outputs, eval_inputs["padding_mask"])
    row = {"size_mb": len(content) / 1e6, "backend": model.backend, **minilm_common.embedding_agreement(reference, embedding)}
    for length in lengths:
        batch = minilm_common.tokenize(minilm_common.sentences(1, offset=1830), length)
        for t in threads:
            result = runtime.benchmark(content, batch, num_threads=t, warmup=3, runs=runs)
            row[f"ms_len{length}_t{t}"] = result.p50_ms
    return row


def main(argv):
    del argv
    backbone = minilm_common.load_backbone()
    eval_inputs = minilm_common.tokenize(minilm_common.sentences(FLAGS.eval_sentences, offset=1200), FLAGS.eval_length)
    calibration = minilm_common.tokenize(minilm_common.sentences(FLAGS.calibration_sentences), FLAGS.eval_length)
    reference = minilm_common.mean_pool(
        backbone.predict(eval_inputs, verbose=0)["sequence_output"], eval_inputs["padding_mask"]
    )
    sample = {k: v[:4] for k, v in eval_inputs.items()}
    lengths = [int(v) for v in FLAGS.lengths]
    threads = [int(v) for v in FLAGS.threads]
    out_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="export_minilm_")
    rows = []
    for target in FLAGS.targets:
        for path_name, convert in (("stock", lambda t: stock_convert(backbone, t, calibration)), ("tfcompress", lambda t: ours_convert(backbone, t, calibration, sample))):
            print(f"converting {target} via {path_name} ...", flush=True)
            started = time.time()
            try:
                content = convert(target)
            except Exception as error:  # report the failure as a row, keep going
                rows.append({"target": target, "path": path_name, "error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"})
                print(f"  failed: {rows[-1]['error']}", flush=True)
                continue
            with open(os.path.join(out_dir, f"minilm_{target}_{path_name}.tflite"), "wb") as f:
                f.write(content)
            row = {"target": target, "path": path_name, "convert_s": time.time() - started}
            row.update(measure(content, eval_inputs, reference, lengths, threads, FLAGS.runs))
            rows.append(row)
            print(f"  {row['size_mb']:.1f} MB, cosine {row['cosine_mean']:.4f}", flush=True)
    print_table(rows, lengths, threads)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=2)


def print_table(rows, lengths, threads):
    base = next((r for r in rows if r["target"] == "float32" and r["path"] == "stock" and "error" not in r), None)
    timing = [f"ms_len{l}_t{t}" for l in lengths for t in threads]
    header = f"{'target':<13}{'path':<11}{'MB':>7}{'size x':>8}" + "".join(f"{k[3:]:>14}" for k in timing) + f"{'lat x':>7}{'cos mean':>9}{'cos min':>8}{'NN agr':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['target']:<13}{r['path']:<11}  FAILED: {r['error']}")
            continue
        size_x = r["size_mb"] / base["size_mb"] if base else float("nan")
        lat_x = r[timing[-1]] / base[timing[-1]] if base else float("nan")
        print(
            f"{r['target']:<13}{r['path']:<11}{r['size_mb']:>7.1f}{size_x:>7.2f}x"
            + "".join(f"{r[k]:>14.2f}" for k in timing)
            + f"{lat_x:>6.2f}x{r['cosine_mean']:>9.4f}{r['cosine_min']:>8.4f}{r['nn_agreement']:>7.2f}"
        )
    print(f"size x and lat x: against the stock fp32 file ({timing[-1]}); latency columns are p50 ms (len, threads); backend {next((r['backend'] for r in rows if 'backend' in r), '?')}.")


if __name__ == "__main__":
    app.run(main)
