"""The SmolLM2 chatbot through `tfcompress.export.to_tflite_generator`, per target.

For each target: export time, file size (beside the Q4_1 GGUF), decode and
prefill tokens/s on LiteRT with 2 threads, Keras `generate` tokens/s on the
same model and thread count, and decode against the memory-bandwidth bound
(weight + cache bytes read per token over a memcpy bandwidth measured in this
run). The LiteRT loop uses `Interpreter.get_signature_runner`, which copies
every cache in and out per call; that copy is counted in the bound's bytes.

llama.cpp is not installed here (`pip install llama-cpp-python` builds from
source for ~25 minutes); its column is left out rather than installed.

    python benchmarks/chatbot.py [--targets float32,dynamic_int8] [--cache_length 512]
"""

import json
import os
import pathlib
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "targets", ["float32", "float16", "dynamic_int8", "int8_weights"], "Export targets."
)
flags.DEFINE_integer("cache_length", 512, "Static cache length S of the exports.")
flags.DEFINE_integer("prefill_length", 128, "The prefill signature length T timed.")
flags.DEFINE_integer("decode_tokens", 64, "Decode steps timed per target.")
flags.DEFINE_integer("threads", 2, "LiteRT and TensorFlow threads.")
flags.DEFINE_bool("keras", True, "Also time Keras `generate` on the same model.")
flags.DEFINE_string(
    "output_dir", None, "Keep the .tflite files here (default: a temporary directory)."
)
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def memcpy_bandwidth(megabytes=256, repeats=5):
    """Bytes moved per second (read + write) by numpy copies of a large array."""
    source = np.ones(megabytes * 2**20, np.uint8)
    target = np.empty_like(source)
    np.copyto(target, source)
    best = min(_timed(lambda: np.copyto(target, source)) for _ in range(repeats))
    return 2 * source.nbytes / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_weight_bytes(content):
    """Constant bytes the `decode` signature reads (its subgraph's weights)."""
    from tfcompress.export import flatbuffer

    model = flatbuffer.read_model(content)
    index = {d.signatureKey.decode(): d.subgraphIndex for d in model.signatureDefs}
    subgraph = model.subgraphs[index["decode"]]
    buffers = {
        t.buffer: flatbuffer.tensor_bytes(t)
        for t in subgraph.tensors
        if flatbuffer.has_data(model, t)
    }
    return sum(buffers.values())


def time_litert(path, meta, prompt_ids, threads):
    from ai_edge_litert.interpreter import Interpreter

    from tfcompress.export.generator.graph import cache_names

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    shape = (1, meta["cache_length"], meta["num_kv_heads"], meta["head_dim"])
    caches = {n: np.zeros(shape, np.float32) for n in cache_names(meta["num_layers"])}
    length = FLAGS.prefill_length
    prefill = interpreter.get_signature_runner(f"prefill_{length}")
    tokens = np.full((1, length), meta["pad_token_id"], np.int32)
    tokens[0, : len(prompt_ids) - 1] = prompt_ids[:-1]
    positions = np.arange(length, dtype=np.int32)
    prefill(tokens=tokens, input_pos=positions, **caches)
    start = time.perf_counter()
    caches = prefill(tokens=tokens, input_pos=positions, **caches)
    prefill_seconds = time.perf_counter() - start
    decode = interpreter.get_signature_runner("decode")
    token, position, answer = prompt_ids[-1], len(prompt_ids) - 1, []
    start = time.perf_counter()
    for _ in range(FLAGS.decode_tokens):
        out = decode(
            tokens=np.array([[token]], np.int32), input_pos=np.array([position], np.int32), **caches
        )
        caches = {n: out[n] for n in caches}
        token, position = int(np.argmax(out["logits"][0, 0])), position + 1
        answer.append(token)
    decode_seconds = time.perf_counter() - start
    return length / prefill_seconds, FLAGS.decode_tokens / decode_seconds, answer


def time_keras(causal_lm, prompt_ids):
    causal_lm.compile(sampler="greedy")
    preprocessor, causal_lm.preprocessor = causal_lm.preprocessor, None
    try:
        length = len(prompt_ids) + FLAGS.decode_tokens
        inputs = {
            "token_ids": np.array([prompt_ids + [0] * FLAGS.decode_tokens], np.int32),
            "padding_mask": np.array([[True] * len(prompt_ids) + [False] * FLAGS.decode_tokens]),
        }
        causal_lm.generate(inputs, max_length=length, stop_token_ids=None)
        seconds = _timed(lambda: causal_lm.generate(inputs, max_length=length, stop_token_ids=None))
    finally:
        causal_lm.preprocessor = preprocessor
    return FLAGS.decode_tokens / seconds


def main(argv):
    del argv
    import tensorflow as tf

    import tfcompress

    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    gguf_path = tfcompress.models.smollm2_path()
    print(f"loading {gguf_path}", flush=True)
    causal_lm = tfcompress.models.from_gguf(gguf_path, sequence_length=FLAGS.cache_length)
    prompt_ids = [int(i) for i in np.asarray(causal_lm.preprocessor.tokenizer(PROMPT))]
    bandwidth = memcpy_bandwidth()
    print(f"memcpy bandwidth {bandwidth / 1e9:.2f} GB/s", flush=True)
    keras_tps = time_keras(causal_lm, prompt_ids) if FLAGS.keras else None
    if keras_tps:
        print(f"Keras generate: {keras_tps:.2f} tok/s", flush=True)
    directory = pathlib.Path(FLAGS.output_dir or tempfile.mkdtemp())
    rows = []
    for target in FLAGS.targets:
        path = directory / f"smollm2_{target}.tflite"
        start = time.perf_counter()
        result = tfcompress.export.to_tflite_generator(
            causal_lm,
            target=target,
            cache_length=FLAGS.cache_length,
            prefill_lengths=(FLAGS.prefill_length,),
            path=path,
            verbose=True,
        )
        export_seconds = time.perf_counter() - start
        meta = result.metadata
        prefill_tps, decode_tps, answer = time_litert(path, meta, prompt_ids, FLAGS.threads)
        cache_bytes = (
            2
            * meta["num_layers"]
            * meta["cache_length"]
            * meta["num_kv_heads"]
            * meta["head_dim"]
            * 4
        )
        # Per token the decode step reads its weights and the whole static
        # cache, and the signature runner copies every cache in and out.
        per_token = decode_weight_bytes(result.content) + cache_bytes + 2 * cache_bytes
        bound = bandwidth / per_token
        rows.append(
            dict(
                target=target,
                size_mb=result.size_bytes / 1e6,
                export_s=export_seconds,
                prefill_tps=prefill_tps,
                decode_tps=decode_tps,
                bound_tps=bound,
                of_bound=decode_tps / bound,
                vs_keras=None if not keras_tps else decode_tps / keras_tps,
                logits_rel_error=result.checks["logits_match"]["relative_error"],
                answer=causal_lm.preprocessor.tokenizer.detokenize(answer[:16]),
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    gguf_mb = os.path.getsize(gguf_path) / 1e6
    print(
        f"\nSmolLM2-135M, cache {FLAGS.cache_length}, {FLAGS.threads} threads, memcpy {bandwidth / 1e9:.1f} GB/s; "
        f"Q4_1 GGUF {gguf_mb:.1f} MB; Keras generate {keras_tps or float('nan'):.2f} tok/s; llama.cpp: not installed"
    )
    print(
        f"{'target':<14}{'MB':>8}{'x fp32':>8}{'prefill t/s':>13}{'decode t/s':>12}{'bound t/s':>11}{'of bound':>10}{'x Keras':>9}"
    )
    base = rows[0]["size_mb"]
    for row in rows:
        vs = f"{row['vs_keras']:.2f}" if row["vs_keras"] else "-"
        print(
            f"{row['target']:<14}{row['size_mb']:>8.1f}{row['size_mb'] / base:>8.2f}{row['prefill_tps']:>13.1f}"
            f"{row['decode_tps']:>12.2f}{row['bound_tps']:>11.1f}{row['of_bound']:>10.2f}{vs:>9}"
        )
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(
            json.dumps(
                dict(rows=rows, keras_tps=keras_tps, bandwidth=bandwidth, gguf_mb=gguf_mb), indent=1
            )
        )


if __name__ == "__main__":
    app.run(main)
