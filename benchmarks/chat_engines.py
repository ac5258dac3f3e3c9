"""Decode speed of a generator file on LiteRT: `CompiledModel` buffer swap vs `Interpreter` signature runners.

The Interpreter's signature runner copies every K/V cache from numpy in and
back out at each step (2x the cache bytes per token); the CompiledModel
engine swaps two sets of LiteRT buffers and copies only the token, position
and logits. Both run the same file with the same threads, interleaved, and
the table shows the median of `--repeats` runs and the ratio.

    PYTHONPATH=$PWD python benchmarks/chat_engines.py                 # tiny Llama3 export
    PYTHONPATH=$PWD python benchmarks/chat_engines.py --model=smollm2.tflite --new_tokens=64
"""

import os
import platform
import statistics
import tempfile

import common
from absl import app, flags

_MODEL = flags.DEFINE_string(
    "model", None, "Generator .tflite file (default: export a tiny random Llama3)."
)
_THREADS = flags.DEFINE_integer("threads", 2, "LiteRT CPU threads.")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 128, "Greedy tokens decoded per run.")
_PROMPT_TOKENS = flags.DEFINE_integer("prompt_tokens", 32, "Prompt length (token ids 3..).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs per engine (interleaved); the median is shown.")
_ENGINES = ("compiled_model", "interpreter")


def _tiny_export(directory):
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests import _tiny_causal_lm
    from tfcompress.export import to_tflite_generator

    path = os.path.join(directory, "tiny_llama3_float32.tflite")
    to_tflite_generator(
        _tiny_causal_lm.tiny_llama3(),
        target="float32",
        cache_length=256,
        prefill_lengths=(32,),
        path=path,
    )
    return path


def _cpu_flags():
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return platform.processor()
    return " ".join(f for f in ("avx512_vnni", "avx512f", "avx2", "amx_int8") if f" {f}" in text)


def measure(path, engine, threads, prompt, new_tokens):
    from tfcompress.runtime import Generator, Sampler

    with Generator(path, num_threads=threads, engine=engine) as generator:
        generator.generate(prompt[:4], max_new_tokens=4, sampler=Sampler(0.0), stop_token_ids=[])
        generator.reset()
        result = generator.generate(
            prompt, max_new_tokens=new_tokens, sampler=Sampler(0.0), stop_token_ids=[]
        )
        cache_bytes = (
            2
            * generator.metadata["num_layers"]
            * generator.cache_length
            * generator.metadata["num_kv_heads"]
            * generator.metadata["head_dim"]
            * 4
        )
    return result, cache_bytes


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as directory:
        path = _MODEL.value or _tiny_export(directory)
        prompt = [3 + (i * 7) % 200 for i in range(_PROMPT_TOKENS.value)]
        runs = {engine: [] for engine in _ENGINES}
        for _ in range(_REPEATS.value):
            for engine in _ENGINES:
                runs[engine].append(
                    measure(path, engine, _THREADS.value, prompt, _NEW_TOKENS.value)
                )
        tokens = {e: [r.token_ids for r, _ in runs[e]] for e in _ENGINES}
        cache_bytes = runs[_ENGINES[0]][0][1]
        rows = []
        for engine in _ENGINES:
            results = [r for r, _ in runs[engine]]
            rows.append(
                [
                    engine,
                    statistics.median(r.decode_tokens_per_second for r in results),
                    statistics.median(r.prefill_tokens_per_second for r in results),
                    statistics.median(r.time_to_first_token * 1000 for r in results),
                    f"{(2 * cache_bytes if engine == 'interpreter' else 0) / 1e6:.2f}",
                ]
            )
        print(
            f"{path}: {os.path.getsize(path) / 1e6:.1f} MB, {_THREADS.value} threads, "
            f"{_PROMPT_TOKENS.value} prompt + {_NEW_TOKENS.value} new tokens, CPU flags: {_cpu_flags()}"
        )
        print(
            common.format_table(
                [
                    "engine",
                    "decode tok/s",
                    "prefill tok/s",
                    "first token ms",
                    "cache MB copied/token",
                ],
                rows,
            )
        )
        print(f"compiled_model / interpreter decode tok/s: {rows[0][1] / rows[1][1]:.2f}x")
        print(
            "same greedy tokens in both engines:",
            tokens["compiled_model"][0] == tokens["interpreter"][0],
        )


if __name__ == "__main__":
    app.run(main)
