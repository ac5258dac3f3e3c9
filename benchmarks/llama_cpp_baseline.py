"""llama.cpp as a baseline, run from already built binaries (bench-only, never in CI).

`--llama_cpp DIR` in benchmarks/chatbot.py points at a directory holding
`llama-bench` and `llama-perplexity` (a llama.cpp CMake build's `bin/`).
Nothing here builds or downloads llama.cpp.
"""

import json
import os
import re
import subprocess
import tempfile

import numpy as np


def _binary(directory, name):
    path = os.path.join(directory, name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"`--llama_cpp` must be a directory with llama.cpp's {name} binary. "
            f"Received: {directory!r} (no executable {path})."
        )
    return path


def check_directory(directory):
    """Raises FileNotFoundError (naming the flag) unless both binaries are there."""
    _binary(directory, "llama-bench")
    _binary(directory, "llama-perplexity")


def speed(directory, gguf_path, threads, prompt_tokens, decode_tokens, repeats=3):
    """`{"prefill_tps", "decode_tps"}` from `llama-bench` on `threads` threads."""
    out = subprocess.run(
        [
            _binary(directory, "llama-bench"),
            "-m",
            gguf_path,
            "-t",
            str(threads),
            "-p",
            str(prompt_tokens),
            "-n",
            str(decode_tokens),
            "-r",
            str(repeats),
            "-o",
            "json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = json.loads(out)
    result = {}
    for row in rows:
        key = "prefill_tps" if row["n_prompt"] and not row["n_gen"] else "decode_tps"
        result[key] = float(row["avg_ts"])
    return result


def perplexity(directory, gguf_path, text_path, context, chunks, threads, bos_id):
    """llama-perplexity on `text_path`, and the exact windows it scored.

    llama-perplexity tokenizes the text itself, cuts it into `chunks` windows
    of `context` tokens, puts BOS first in each window when the vocabulary
    adds BOS, and scores the second half of each window (targets
    `context // 2 + 1 .. context - 1`). Its `--kl-divergence-base` file
    records the token ids, so the same windows can be scored elsewhere.

    Returns:
        `(ppl, windows)`: llama.cpp's final estimate and an int32 array
        `[chunks, context]` of the windows as it ran them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        logits_file = os.path.join(tmp, "base.kld")
        run = subprocess.run(
            [
                _binary(directory, "llama-perplexity"),
                "-m",
                gguf_path,
                "-f",
                text_path,
                "-c",
                str(context),
                "-b",
                str(context),
                "--chunks",
                str(chunks),
                "-t",
                str(threads),
                "--kl-divergence-base",
                logits_file,
            ],
            capture_output=True,
            text=True,
        )
        if run.returncode:
            raise RuntimeError(f"llama-perplexity failed:\n{run.stderr[-2000:]}")
        match = re.search(r"Final estimate: PPL = ([0-9.]+)", run.stdout + run.stderr)
        if match is None:
            raise RuntimeError(
                f"no 'Final estimate' in llama-perplexity's output:\n{run.stderr[-2000:]}"
            )
        with open(logits_file, "rb") as f:
            if f.read(8) != b"_logits_":
                raise RuntimeError(f"{logits_file} is not a llama-perplexity logits file")
            n_ctx, _, n_chunk = np.frombuffer(f.read(12), np.int32)
            tokens = np.frombuffer(f.read(4 * n_chunk * n_ctx), np.int32).reshape(n_chunk, n_ctx)
    windows = tokens.copy()
    # The file holds the ids before the per-window BOS; the text was
    # tokenized with BOS first exactly when the vocabulary adds it.
    if windows[0, 0] == bos_id:
        windows[:, 0] = bos_id
    return float(match.group(1)), windows
