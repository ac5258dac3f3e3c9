"""Low-rank factorization of the byte-level GPT: held-out perplexity per method.

`tfcompress.low_rank.factorize(compression=--compression)` of the whole
teacher of `benchmarks/distill_gpt.py` (its Dense/EinsumDense layers are
the attention query, key, value and output projections and both FFN
projections of every block; the embeddings are not factorizable), with each
of `--methods`. The teacher comes from `distill_gpt.load_or_train_teacher`
(same `--cache_dir` and teacher flags; the defaults here are the settings of
the teacher cached by the distillation runs, 4 blocks of width 256, so a
cached one is loaded rather than trained). The data-aware methods calibrate
on `--calibration_windows` random windows of the training bytes
(`one_shot_gpt.calibration_windows`, also given to "svd" so its report
carries output errors); perplexity on the held-out last 10% of
`pydoc_data.topics` (`--eval_windows`, 0 for all), bits per byte its log2.

"parameters kept" is the factorizable layers' (kernels and biases) share
after factorization, which `compression` targets; "model" the whole
model's parameter count.

    python benchmarks/low_rank_gpt.py --cache_dir /tmp/distill_run/gpt_cache
    python benchmarks/low_rank_gpt.py --methods svd,whitened --compression 0.6

Measured with the first command (full run, nothing reduced: 128 calibration
windows and all 364 held-out windows of 128 bytes) on 2 shared cores of an
AMD EPYC (load average 1.5-5), TF 2.21, Keras 3.15; byte GPT of 3,257,856
parameters, 3,154,944 of them in its 24 factorizable layers; about 4-8 s
per factorization:

| method           | parameters kept | model     | layers | perplexity | bits/byte | increase |
|------------------|-----------------|-----------|--------|------------|-----------|----------|
| dense            | 1.000           | 3,257,856 |        | 3.196      | 1.6761    |          |
| svd              | 0.799           | 2,625,024 | 3      | 3.290      | 1.7182    | +0.094   |
| activation_aware | 0.799           | 2,625,024 | 3      | 3.292      | 1.7189    | +0.096   |
| whitened         | 0.799           | 2,622,976 | 5      | 3.209      | 1.6820    | +0.013   |

With `--compression 0.6` (same run otherwise):

| method           | parameters kept | model     | layers | perplexity | bits/byte | increase |
|------------------|-----------------|-----------|--------|------------|-----------|----------|
| dense            | 1.000           | 3,257,856 |        | 3.196      | 1.6761    |          |
| svd              | 0.599           | 1,992,192 | 6      | 3.706      | 1.8900    | +0.511   |
| activation_aware | 0.599           | 1,992,192 | 6      | 3.702      | 1.8884    | +0.507   |
| whitened         | 0.597           | 1,986,048 | 19     | 3.263      | 1.7060    | +0.067   |

Whitening keeps about a seventh of plain SVD's perplexity increase at both
budgets. Activation-aware scaling does not help here: the allocation
chooses the same layers and ranks as plain SVD (at 0.8 three FFN
projections, blocks 0 and 3, at ranks 32-48), and the per-channel mean |x|
of LayerNorm-ed inputs to a 256-wide model is too even to change the
spectrum much (output errors within 1% of SVD's). The whitened allocation
spreads the cut over more layers at higher ranks (at 0.8 the FFN input
projections of all blocks at rank 48-104 and block 0's key at 96), output
errors 0.03-0.05 against SVD's 0.11-0.41.
"""

import json
import math
import time

import distill_gpt
import one_shot_gpt
from absl import app, flags
from common import format_table, start_benchmark

_COMPRESSION = flags.DEFINE_float(
    "compression", 0.8, "Fraction of the factorizable layers' parameters kept."
)
_ROUND_TO = flags.DEFINE_integer("round_to", 8, "Rank granularity.", lower_bound=1)
_LOW_RANK_JSON = flags.DEFINE_string("low_rank_json", None, "Optional path for the results.")

# one_shot_gpt's `--methods` and `--calibration_windows`, here factorize's methods.
flags.FLAGS.set_default("methods", ["svd", "activation_aware", "whitened"])
flags.FLAGS.set_default("teacher_layers", 4)
flags.FLAGS.set_default("teacher_hidden", 256)
flags.FLAGS.set_default("teacher_steps", 2500)
flags.FLAGS.set_default("batch_size", 16)

_EVAL_BATCH = 32


def factorizable_parameters(model, paths):
    """Parameters of the layers at `paths` (dense or factorized)."""
    from tfcompress.core import walk_layers

    return sum(ref.layer.count_params() for ref in walk_layers(model) if ref.path in paths)


def factorizable_paths(keras, model):
    from tfcompress.core import walk_layers

    return {
        ref.path
        for ref in walk_layers(model)
        if isinstance(ref.layer, (keras.layers.Dense, keras.layers.EinsumDense))
    }


def main(argv):
    start_benchmark(argv)
    import keras
    import keras_hub
    import numpy as np

    from tfcompress.low_rank import factorize, low_rank_report

    train, val = distill_gpt.corpus()
    held_out = distill_gpt.validation_windows(val)
    calibration = one_shot_gpt.calibration_windows(
        train, flags.FLAGS.calibration_windows, distill_gpt._SEQ_LEN.value
    )
    data = [
        {
            "token_ids": calibration[i : i + _EVAL_BATCH],
            "padding_mask": np.ones_like(calibration[i : i + _EVAL_BATCH]),
        }
        for i in range(0, len(calibration), _EVAL_BATCH)
    ]
    lm = distill_gpt.load_or_train_teacher(keras, keras_hub, train)
    paths = factorizable_paths(keras, lm)
    dense_factorizable = factorizable_parameters(lm, paths)
    dense_total = lm.count_params()
    print(
        f"[gpt] {dense_total:,} parameters, {dense_factorizable:,} in {len(paths)} factorizable layers; "
        f"{len(calibration)} calibration and {len(held_out)} held-out windows of "
        f"{distill_gpt._SEQ_LEN.value} bytes",
        flush=True,
    )
    dense = one_shot_gpt.lm_perplexity(lm, held_out, _EVAL_BATCH)
    print(f"[gpt] dense held-out perplexity {dense:.4f}", flush=True)

    results = []
    for method in flags.FLAGS.methods:
        began = time.perf_counter()
        small = factorize(
            lm,
            compression=_COMPRESSION.value,
            method=method,
            representative_data=data,
            round_to=_ROUND_TO.value,
        )
        seconds = time.perf_counter() - began
        report = low_rank_report(small)
        ppl = one_shot_gpt.lm_perplexity(small, held_out, _EVAL_BATCH)
        kept = factorizable_parameters(small, paths) / dense_factorizable
        result = {
            "method": method,
            "perplexity": ppl,
            "kept": kept,
            "parameters": small.count_params(),
            "factorized_layers": len(report.rows),
            "seconds": seconds,
        }
        print(
            f"[{method}] {seconds:.1f} s, {len(report.rows)} layers factorized, kept {kept:.4f}, "
            f"perplexity {ppl:.4f}",
            flush=True,
        )
        print(report.table(), flush=True)
        results.append(result)
        del small

    rows = [
        ["dense", "1.000", f"{dense_total:,}", "", f"{dense:.3f}", f"{math.log2(dense):.4f}", ""]
    ]
    for r in results:
        rows.append(
            [
                r["method"],
                f"{r['kept']:.3f}",
                f"{r['parameters']:,}",
                str(r["factorized_layers"]),
                f"{r['perplexity']:.3f}",
                f"{math.log2(r['perplexity']):.4f}",
                f"{r['perplexity'] - dense:+.3f}",
            ]
        )
    print(f"\nbyte GPT factorized to compression={_COMPRESSION.value}: held-out perplexity")
    print(
        format_table(
            ["method", "parameters kept", "model", "layers", "perplexity", "bits/byte", "increase"],
            rows,
        )
    )
    if _LOW_RANK_JSON.value:
        with open(_LOW_RANK_JSON.value, "w", encoding="utf-8") as f:
            json.dump(
                {"dense": dense, "dense_parameters": dense_total, "results": results}, f, indent=1
            )


if __name__ == "__main__":
    app.run(main)
