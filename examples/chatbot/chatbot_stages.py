"""Measuring an exported generator and writing the stage table (text, JSON, PNG)."""

import json
import os

import numpy as np

COLUMNS = (
    ("stage", "stage", "{}"),
    ("parameters", "parameters", "{:,}"),
    ("file_mb", "file MB", "{:.1f}"),
    ("size_vs_teacher", "x teacher fp32", "{:.3f}"),
    ("perplexity", "held-out ppl (file)", "{:.2f}"),
    ("prefill_tok_s", "prefill tok/s", "{:.1f}"),
    ("decode_tok_s", "decode tok/s", "{:.1f}"),
    ("ttft_ms", "first token ms", "{:.0f}"),
)


def measure(path, parameters, held_out, prompt_ids, decode_tokens, threads):
    """One table row for the generator file `path`, all numbers from LiteRT.

    Perplexity is teacher-forced through the file's own `decode` signature
    (`tfcompress.evaluation.perplexity` on a `Generator`). Speed: a greedy
    answer of `decode_tokens` tokens after `prompt_ids` (prefill signatures,
    then decode, stop tokens ignored), after one untimed warm-up answer.
    """
    from tfcompress.evaluation import perplexity
    from tfcompress.runtime import Generator

    with Generator(path, num_threads=threads) as generator:
        ppl = perplexity(generator, held_out, batch_size=len(held_out))
        greedy = generator.sampler(temperature=0.0)
        generator.reset()
        generator.generate(prompt_ids, max_new_tokens=4, sampler=greedy, stop_token_ids=[])
        generator.reset()
        result = generator.generate(
            prompt_ids, max_new_tokens=decode_tokens, sampler=greedy, stop_token_ids=[]
        )
    return {
        "file": os.path.basename(path),
        "parameters": int(parameters),
        "file_bytes": os.path.getsize(path),
        "perplexity": ppl,
        "prefill_tok_s": result.prefill_tokens_per_second,
        "decode_tok_s": result.decode_tokens_per_second,
        "ttft_ms": 1000.0 * result.time_to_first_token,
        "prompt_tokens": result.prompt_tokens,
        "decode_steps": result.decode_steps,
        "threads": threads,
    }


def complete_rows(rows):
    """Adds `file_mb` and `size_vs_teacher` (bytes over the teacher fp32 file's)."""
    reference = next((r["file_bytes"] for r in rows if r["stage"] == "teacher fp32"), None)
    for row in rows:
        row["file_mb"] = row["file_bytes"] / 1e6
        row["size_vs_teacher"] = row["file_bytes"] / reference if reference else float("nan")
    return rows


def format_table(rows):
    """The rows as an aligned text table."""
    header = [title for _, title, _ in COLUMNS]
    body = [[fmt.format(row[key]) for key, _, fmt in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]

    def line(cells):
        return " | ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        )

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([line(header), rule] + [line(cells) for cells in body])


def write_json(path, rows, extra):
    with open(path, "w") as f:
        json.dump({"stages": rows, **extra}, f, indent=2)


def write_plot(path, rows):
    """Four bar panels (file size, perplexity, decode and prefill tok/s), one bar per stage."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = (
        ("file_mb", "file size (MB)"),
        ("perplexity", "held-out perplexity (exported file)"),
        ("decode_tok_s", "decode tokens/s"),
        ("prefill_tok_s", "prefill tokens/s"),
    )
    names = [row["stage"] for row in rows]
    figure = Figure(figsize=(11, 7), layout="constrained")
    FigureCanvasAgg(figure)
    colours = ["#4c72b0", "#8fa9d6", "#dd8452", "#f0b98d", "#55a868", "#8fd19e"]
    for index, (key, title) in enumerate(panels):
        ax = figure.add_subplot(2, 2, index + 1)
        values = np.array([row[key] for row in rows], dtype=float)
        bars = ax.bar(range(len(rows)), values, color=colours[: len(rows)])
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=8)
        ax.set_xticks(range(len(rows)), names, rotation=15, fontsize=8)
        ax.set_title(title, fontsize=10)
    figure.suptitle("compress_chatbot: teacher and distilled student, fp32 and int8 (LiteRT)")
    figure.savefig(path, dpi=100)
