"""The SmolLM2 chatbot through `tfcompress.export.to_tflite_generator`, per target.

For each target (float32, float16, dynamic_int8, int8_weights, mixed_int8): file size
beside the Q4_1 GGUF, the logits check against Keras, held-out perplexity
through the exported file (`tfcompress.evaluation.perplexity`, teacher-forced
through its `decode`), and prefill / decode tokens/s through
`tfcompress.runtime.Generator` on 2 threads, with the `CompiledModel` engine
(buffer swap, what `tfcompress chat` uses) and the `Interpreter` one
(signature runners, a cache copy in and out per step). Beside them: Keras
`generate` on the same model and threads, the memory-bandwidth bound (the
decode signature's weight bytes plus the cache it reads, over a memcpy
bandwidth measured in this run), and with `--llama_cpp` llama.cpp's own
prefill / decode (`llama-bench`, same threads) and perplexity
(`llama-perplexity`) on the Q4_1 file.

Perplexity windows: llama-perplexity's. `--context` tokens per window,
`--chunks` windows, BOS first when the vocabulary adds it, and only the second
half of each window scored. With `--llama_cpp` the windows are the token ids
llama-perplexity itself ran (read from its `--kl-divergence-base` file), so
the reader's Keras model and every export are scored on identical ids;
without it, our tokenizer's ids cut the same way.

Exports are cached in `--output_dir` (with a .json of their export time and
logits check) and reused when run again.

    PYTHONPATH=$PWD python benchmarks/chatbot.py --output_dir /tmp/chatbench \\
        [--llama_cpp /path/to/llama.cpp/build/bin] [--targets float32,int8_weights]
"""

import json
import os
import pathlib
import tempfile
import time

import numpy as np
from absl import app, flags

from tfcompress.data import pydoc_text

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "targets",
    ["float32", "float16", "dynamic_int8", "int8_weights", "mixed_int8"],
    "Export targets.",
)
flags.DEFINE_integer("cache_length", 512, "Static cache length S of the exports.")
flags.DEFINE_integer("prefill_length", 128, "The prefill signature length T (the timed prompt).")
flags.DEFINE_integer("decode_tokens", 64, "Greedy decode steps timed per target and engine.")
flags.DEFINE_integer("threads", 2, "LiteRT, TensorFlow and llama.cpp threads.")
flags.DEFINE_integer("context", 256, "Perplexity window length in tokens.")
flags.DEFINE_integer("chunks", 4, "Perplexity windows.")
flags.DEFINE_bool("keras", True, "Also time Keras `generate` on the same model.")
flags.DEFINE_string(
    "llama_cpp", None, "Directory with llama.cpp's built llama-bench and llama-perplexity."
)
flags.DEFINE_string(
    "output_dir", None, "Keep (and reuse) the .tflite files here (default: a temporary directory)."
)
flags.DEFINE_integer("llama_cpp_repeats", 3, "llama-bench repetitions (-r).")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")

ENGINES = ("compiled_model", "interpreter")


def held_out_text():
    """The last 10% of pydoc's topics (the held-out split of benchmarks/distill_gpt.py)."""
    text = pydoc_text()
    return text[int(0.9 * len(text)) :]


def cpu_flags():
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    return " ".join(f for f in ("avx512_vnni", "avx512f", "avx2", "amx_int8") if f" {f}" in text)


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


def time_generator(path, prompt_ids, engine):
    """(prefill tok/s, decode tok/s, greedy ids) through `tfcompress.runtime.Generator`."""
    from tfcompress.runtime import Generator, Sampler

    with Generator(path, num_threads=FLAGS.threads, engine=engine) as generator:
        greedy = Sampler(0.0)
        generator.generate(prompt_ids, max_new_tokens=4, sampler=greedy, stop_token_ids=[])
        generator.reset()
        result = generator.generate(
            prompt_ids, max_new_tokens=FLAGS.decode_tokens, sampler=greedy, stop_token_ids=[]
        )
    return result.prefill_tokens_per_second, result.decode_tokens_per_second, result.token_ids


def scored_mask(windows):
    """llama-perplexity's scoring: targets in the second half of each window only."""
    mask = np.zeros(windows.shape, bool)
    mask[:, windows.shape[1] // 2 + 1 :] = True
    return mask


def export_or_reuse(causal_lm, target, directory):
    """(path, export info) for `target`, exporting only when the cached file is missing."""
    import tfcompress
    from tfcompress.export.generator.generator_checks import DEFAULT_TOLERANCE, check_logits

    path = directory / f"smollm2_{target}_{FLAGS.cache_length}_{FLAGS.prefill_length}.tflite"
    info_path = path.with_suffix(".json")
    if info_path.exists():
        print(f"{target}: reusing {path}", flush=True)
        return path, json.loads(info_path.read_text())
    seconds = None
    if path.exists():
        print(f"{target}: reusing {path} (checking it again)", flush=True)
        content = path.read_bytes()
        meta = tfcompress.export.read_generator_metadata(path)
        if meta["target"] != target or meta["cache_length"] != FLAGS.cache_length:
            raise app.UsageError(f"{path} holds {meta['target']} / {meta['cache_length']}.")
    else:
        start = time.perf_counter()
        result = tfcompress.export.to_tflite_generator(
            causal_lm,
            target=target,
            cache_length=FLAGS.cache_length,
            prefill_lengths=(FLAGS.prefill_length,),
            path=path,
            verify=False,
            verbose=True,
        )
        seconds = time.perf_counter() - start
        content, meta = result.content, result.metadata
    # The check to_tflite_generator would run, kept as numbers even when it
    # fails (dynamic_int8 on SmolLM2) so the row is still measured.
    check = check_logits(causal_lm, content, meta, DEFAULT_TOLERANCE[target])
    info = dict(
        export_s=seconds,
        logits_rel_error=check["relative_error"],
        logits_check_passed=bool(check["passed"]),
        argmax_agreement=check["argmax_agreement"],
        decode_weight_bytes=decode_weight_bytes(content),
    )
    info_path.write_text(json.dumps(info))
    return path, info


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


def keras_perplexity(causal_lm, windows):
    from tfcompress.evaluation import perplexity

    def logits(tokens):
        return causal_lm({"token_ids": tokens, "padding_mask": np.ones_like(tokens, bool)})

    return perplexity(logits, windows, scored_mask(windows), batch_size=1)


def perplexity_windows(causal_lm, text, directory, bos_id):
    """(windows [chunks, context], llama.cpp's perplexity or None, first index where
    our tokenizer's ids differ from llama.cpp's or None)."""
    ours = [int(i) for i in np.asarray(causal_lm.preprocessor.tokenizer(text))]
    if not FLAGS.llama_cpp:
        needed = FLAGS.chunks * FLAGS.context
        if len(ours) < needed:
            raise app.UsageError(f"The held-out text has {len(ours)} tokens < {needed}.")
        return np.asarray(ours[:needed], np.int32).reshape(FLAGS.chunks, FLAGS.context), None, None
    import llama_cpp_baseline

    text_path = directory / "held_out.txt"
    text_path.write_text(text, encoding="utf-8")
    ppl, windows = llama_cpp_baseline.perplexity(
        FLAGS.llama_cpp,
        str(tfcompress_gguf()),
        str(text_path),
        FLAGS.context,
        FLAGS.chunks,
        FLAGS.threads,
        bos_id,
    )
    # Position 0 may be BOS; compare what follows.
    theirs = windows.reshape(-1)[1:]
    mine = np.asarray(ours[1 : 1 + len(theirs)])
    differ = np.flatnonzero(mine != theirs[: len(mine)])
    first_mismatch = None if not len(differ) else int(differ[0]) + 1
    return windows, ppl, first_mismatch


def tfcompress_gguf():
    import tfcompress

    return tfcompress.models.smollm2_path()


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_tables(rows, summary):
    import common

    base = next((r for r in rows if r["target"] == "float32"), rows[0])
    table = []
    for r in rows:
        table.append(
            [
                r["target"],
                f"{r['size_mb']:.1f}",
                f"{r['size_mb'] / base['size_mb']:.3f}",
                f"{r['logits_rel_error']:.3f}",
                f"{r['perplexity']:.2f}",
                f"{r['perplexity'] / base['perplexity'] - 1:+.1%}",
                f"{r['prefill_tps']['compiled_model']:.1f}",
                f"{r['decode_tps']['compiled_model']:.1f}",
                f"{r['decode_tps']['interpreter']:.1f}",
                f"{r['bound_tps']:.1f}",
                f"{r['of_bound']:.2f}",
                _fmt(r["vs_keras"], ".2f"),
                _fmt(r["vs_llama_cpp"], ".2f"),
            ]
        )
    llama = summary.get("llama_cpp") or {}
    table.append(
        [
            "llama.cpp Q4_1",
            f"{summary['gguf_mb']:.1f}",
            f"{summary['gguf_mb'] / base['size_mb']:.3f}",
            "-",
            _fmt(llama.get("perplexity"), ".2f"),
            "-"
            if llama.get("perplexity") is None
            else f"{llama['perplexity'] / base['perplexity'] - 1:+.1%}",
            _fmt(llama.get("prefill_tps"), ".1f"),
            _fmt(llama.get("decode_tps"), ".1f"),
            "-",
            "-",
            "-",
            "-",
            "1.00" if llama else "-",
        ]
    )
    print(
        f"\nSmolLM2-135M, cache {FLAGS.cache_length}, prefill {FLAGS.prefill_length}, "
        f"{FLAGS.threads} threads, CPU flags: {summary['cpu_flags']}, memcpy "
        f"{summary['bandwidth'] / 1e9:.1f} GB/s; Keras generate "
        f"{_fmt(summary['keras_tps'], '.2f')} tok/s; Keras (reader) perplexity "
        f"{summary['keras_perplexity']:.2f} on {FLAGS.chunks} x {FLAGS.context} windows"
    )
    print(
        common.format_table(
            [
                "target",
                "MB",
                "x fp32",
                "logit err",
                "ppl",
                "ppl vs fp32",
                "prefill t/s",
                "decode t/s (CM)",
                "decode t/s (Interp)",
                "bound t/s",
                "of bound",
                "x Keras",
                "x llama.cpp",
            ],
            table,
        )
    )
    targets = []
    if llama.get("perplexity"):
        ratio = summary["keras_perplexity"] / llama["perplexity"] - 1
        targets.append(
            ["reader Keras ppl vs llama.cpp ppl, same ids", f"{ratio:+.2%}", abs(ratio) <= 0.02]
        )
    for r in rows:
        if r["target"] not in ("dynamic_int8", "int8_weights", "mixed_int8"):
            continue
        name = r["target"]
        ppl = r["perplexity"] / base["perplexity"] - 1
        targets += [
            [f"{name}: ppl within 2% of fp32", f"{ppl:+.2%}", ppl <= 0.02],
            [
                f"{name}: file <= 0.27x fp32",
                f"{r['size_mb'] / base['size_mb']:.3f}x",
                r["size_mb"] / base["size_mb"] <= 0.27,
            ],
            [
                f"{name}: decode >= 3x Keras generate",
                _fmt(r["vs_keras"], ".2f") + "x",
                r["vs_keras"] is not None and r["vs_keras"] >= 3,
            ],
            [f"{name}: decode >= 50% of bound", f"{r['of_bound']:.2f}", r["of_bound"] >= 0.5],
            [
                f"{name}: decode >= 0.8x llama.cpp",
                _fmt(r["vs_llama_cpp"], ".2f") + "x",
                r["vs_llama_cpp"] is not None and r["vs_llama_cpp"] >= 0.8,
            ],
        ]
    print(common.format_table(["target", "value", "met"], targets))


def main(argv):
    del argv
    import tensorflow as tf

    import tfcompress

    if FLAGS.llama_cpp:
        import llama_cpp_baseline

        try:
            llama_cpp_baseline.check_directory(FLAGS.llama_cpp)
        except FileNotFoundError as error:
            raise app.UsageError(str(error)) from error
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    directory = pathlib.Path(FLAGS.output_dir or tempfile.mkdtemp())
    directory.mkdir(parents=True, exist_ok=True)
    gguf_path = tfcompress_gguf()
    print(f"loading {gguf_path}", flush=True)
    causal_lm = tfcompress.models.from_gguf(gguf_path, sequence_length=FLAGS.cache_length)
    tokenizer = causal_lm.preprocessor.tokenizer
    bos_id = int(tokenizer.start_token_id)
    windows, llama_ppl, agreement = perplexity_windows(
        causal_lm, held_out_text(), directory, bos_id
    )
    if FLAGS.llama_cpp:
        # Scoring uses llama.cpp's ids either way; this says whether our
        # tokenizer would have produced them.
        print(
            "our tokenizer vs llama.cpp's on the held-out text: "
            + ("same ids" if agreement is None else f"first different id at {agreement}")
        )
    keras_ppl = keras_perplexity(causal_lm, windows)
    print(f"Keras perplexity {keras_ppl:.3f}, llama.cpp {_fmt(llama_ppl, '.3f')}", flush=True)
    held_out_ids = [int(i) for i in np.asarray(tokenizer(held_out_text()))]
    prompt_ids = held_out_ids[: FLAGS.prefill_length + 1]
    bandwidth = memcpy_bandwidth()
    print(f"memcpy bandwidth {bandwidth / 1e9:.2f} GB/s", flush=True)
    keras_tps = time_keras(causal_lm, prompt_ids) if FLAGS.keras else None
    print(f"Keras generate: {_fmt(keras_tps, '.2f')} tok/s", flush=True)
    llama = None
    if FLAGS.llama_cpp:
        import llama_cpp_baseline

        llama = llama_cpp_baseline.speed(
            FLAGS.llama_cpp,
            str(gguf_path),
            FLAGS.threads,
            FLAGS.prefill_length,
            FLAGS.decode_tokens,
            repeats=FLAGS.llama_cpp_repeats,
        )
        llama["perplexity"] = llama_ppl
        llama["tokenizer_first_mismatch"] = agreement
        print(f"llama.cpp: {llama}", flush=True)
    rows = []
    for target in FLAGS.targets:
        path, info = export_or_reuse(causal_lm, target, directory)
        from tfcompress.runtime import Generator

        with Generator(path, num_threads=FLAGS.threads) as generator:
            ppl = tfcompress.evaluation.perplexity(
                generator, windows, scored_mask(windows), batch_size=1
            )
        prefill, decode, answers = {}, {}, {}
        for engine in ENGINES:
            prefill[engine], decode[engine], answers[engine] = time_generator(
                path, prompt_ids, engine
            )
        with Generator(path) as generator:
            meta = generator.metadata
        cache_bytes = (
            2
            * meta["num_layers"]
            * meta["cache_length"]
            * meta["num_kv_heads"]
            * meta["head_dim"]
            * 4
        )
        # Per token, decode reads every weight of its signature and the whole
        # static cache (CompiledModel swaps buffers: no cache copy).
        bound = bandwidth / (info["decode_weight_bytes"] + cache_bytes)
        rows.append(
            dict(
                target=target,
                size_mb=os.path.getsize(path) / 1e6,
                perplexity=ppl,
                prefill_tps=prefill,
                decode_tps=decode,
                bound_tps=bound,
                of_bound=decode["compiled_model"] / bound,
                vs_keras=None if not keras_tps else decode["compiled_model"] / keras_tps,
                vs_llama_cpp=None if not llama else decode["compiled_model"] / llama["decode_tps"],
                same_greedy_ids_both_engines=answers["compiled_model"] == answers["interpreter"],
                **info,
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    summary = dict(
        cpu_flags=cpu_flags(),
        bandwidth=bandwidth,
        keras_tps=keras_tps,
        keras_perplexity=keras_ppl,
        gguf_mb=os.path.getsize(gguf_path) / 1e6,
        llama_cpp=llama,
        windows=[FLAGS.chunks, FLAGS.context],
    )
    print_tables(rows, summary)
    if FLAGS.json:
        pathlib.Path(FLAGS.json).write_text(json.dumps(dict(rows=rows, **summary), indent=1))


if __name__ == "__main__":
    app.run(main)
