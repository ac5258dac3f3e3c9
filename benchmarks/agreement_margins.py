"""Where nearest-neighbour agreement is lost: split by the reference's top-1/top-2 margin.

`distill_minilm.py` and `structured_minilm.py` report nearest-neighbour (NN)
agreement: the share of sentences whose most similar other sentence is the
same under the compressed model's embeddings as under the original's. This
script takes two sentence-embedding TFLite files (as `distill_minilm.py
--output_dir` writes them: `teacher_fp32.tflite`, `student_fp32.tflite`) and
splits that agreement by how clear the reference's choice is: the margin
between the reference's most and second most similar sentence. A sentence
whose margin is under the student's similarity error can flip either way,
however good the student is elsewhere. It also reports whether the
reference's neighbour is in the student's top 2.

    python benchmarks/distill_minilm.py --inits 1,3,5 --seeds 0 --keras_inits none \
        --steps 12000 --eval_every 1500 --qat_steps 300 --latency_rounds 5 \
        --output_dir /tmp/dm12k
    python benchmarks/agreement_margins.py --reference /tmp/dm12k/teacher_fp32.tflite \
        --candidate /tmp/dm12k/student_fp32.tflite

(`--eval_sentences`, `--seq_len` and `--num_threads` are distill_minilm's flags.)

Measured on the 12,000-step student of `distill_minilm.py` (commit 167c57e;
the 384 held-out pydoc sentences, and 384 pydoc sentences it trained on):

| set      | cos    | NN    | margin < 0.01 | 0.01-0.02  | 0.02-0.05  | >= 0.05     | in top 2 |
|----------|--------|-------|---------------|------------|------------|-------------|----------|
| held-out | 0.9603 | 69.0% | 60: 40.0%     | 65: 40.0%  | 99: 63.6%  | 160: 95.0%  | 89.3%    |
| train    | 0.9898 | 90.9% | 63: 58.7%     | 40: 92.5%  | 105: 94.3% | 176: 100.0% | 97.4%    |

(cells: sentences in the margin band, and their NN agreement). A third of
the held-out sentences (125 of 384) have a margin under 0.02, and the
student agrees on 40% of them; on the 160 with a clear neighbour it agrees
on 95%.
"""

import distill_minilm as dm
import numpy as np
from absl import app, flags
from common import format_table, start_benchmark
from minilm_common import sentences, tokenize

_REFERENCE = flags.DEFINE_string("reference", None, "The original model's .tflite.", required=True)
_CANDIDATE = flags.DEFINE_string(
    "candidate", None, "The compressed model's .tflite.", required=True
)
_BANDS = ((0.0, 0.01), (0.01, 0.02), (0.02, 0.05), (0.05, 2.0))


def embeddings(path, data):
    """`path`'s sentence embeddings of `data` in LiteRT, normalized (distill_minilm's runner)."""
    with open(path, "rb") as f:
        rows = dm.litert_embeddings(f.read(), data)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def margins_row(name, reference, candidate):
    ref_sim, cand_sim = reference @ reference.T, candidate @ candidate.T
    np.fill_diagonal(ref_sim, -np.inf)
    np.fill_diagonal(cand_sim, -np.inf)
    ranked = np.sort(ref_sim, axis=1)
    margin = ranked[:, -1] - ranked[:, -2]
    target = ref_sim.argmax(axis=1)
    agree = target == cand_sim.argmax(axis=1)
    top2 = np.argsort(-cand_sim, axis=1)[:, :2]
    row = [name, f"{(reference * candidate).sum(1).mean():.4f}", f"{100 * agree.mean():.1f}%"]
    for low, high in _BANDS:
        band = (margin >= low) & (margin < high)
        share = f"{100 * agree[band].mean():.1f}%" if band.any() else "-"
        row.append(f"{band.sum()}: {share}")
    row.append(f"{100 * np.mean([target[i] in top2[i] for i in range(len(target))]):.1f}%")
    return row


def main(argv):
    start_benchmark(argv)
    pool = sentences()
    count = dm._EVAL_SENTENCES.value
    sets = {"held-out": pool[:count], "train": pool[count : 2 * count]}
    rows = []
    for name, texts in sets.items():
        data = tokenize(texts, sequence_length=dm._SEQ_LEN.value)
        rows.append(
            margins_row(
                name, embeddings(_REFERENCE.value, data), embeddings(_CANDIDATE.value, data)
            )
        )
    print(
        "NN agreement by the reference's top-1/top-2 similarity margin "
        "(cells: sentences in the band: their agreement)"
    )
    print(
        format_table(
            ["set", "cos", "NN", "margin < 0.01", "0.01-0.02", "0.02-0.05", ">= 0.05", "in top 2"],
            rows,
        )
    )


if __name__ == "__main__":
    app.run(main)
