"""Distil a byte-level GPT-2 into a half-depth student with tfcompress.distillation.

Trains (or loads with `--teacher_path`) a small keras-hub `GPT2CausalLM` on
the bytes of Python's `pydoc_data.topics` (first 90% for training, the last
10% for validation), cuts a student from it with
`tfcompress.distillation.make_student` (embeddings, the chosen blocks and the
final norm copied), distils it with `tfcompress.distillation.Distiller`
(temperature-scaled KL on the next-byte logits, optionally hidden-state losses
between matching blocks), prints the validation perplexity of the teacher, the
freshly cut student and the distilled student, and saves the teacher and the
student as `.keras` files (the student alone: no teacher, no projections).

Usage:

    python examples/distill_gpt.py --student_layers=1,3 --feature_loss=cosine
    python examples/distill_gpt.py --flagfile=examples/distill_gpt.flags
"""

import math
import os

from absl import app, flags

from tfcompress.data import pydoc_text

_TEACHER_PATH = flags.DEFINE_string(
    "teacher_path",
    None,
    "A trained GPT2CausalLM `.keras` file mapping bytes to logits; if unset, "
    "a teacher is trained first and saved in --output_dir.",
)
_TEACHER_LAYERS = flags.DEFINE_integer(
    "teacher_layers", 4, "Blocks of a trained teacher.", lower_bound=2
)
_HIDDEN = flags.DEFINE_integer("hidden_dim", 128, "Width of a trained teacher.")
_NUM_HEADS = flags.DEFINE_integer("num_heads", 4, "Attention heads of a trained teacher.")
_TEACHER_STEPS = flags.DEFINE_integer(
    "teacher_steps", 1000, "Training steps of a trained teacher.", lower_bound=1
)
_STUDENT_LAYERS = flags.DEFINE_list(
    "student_layers",
    None,
    "Teacher blocks the student keeps, e.g. 1,3; if unset, half of them, "
    "evenly spaced and ending at the last (`make_student(num_layers=...)`).",
)
_STEPS = flags.DEFINE_integer("steps", 500, "Distillation steps.", lower_bound=1)
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Bytes per window.", lower_bound=8)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Windows per step.", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
_ALPHA = flags.DEFINE_float("alpha", 0.1, "Weight of the next-byte cross-entropy.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Distillation temperature.")
_FEATURE_LOSS = flags.DEFINE_enum(
    "feature_loss",
    None,
    ["mse", "cosine"],
    "Hidden-state loss between each student block and the teacher block it "
    "was copied from; none if unset.",
)
_FEATURE_WEIGHT = flags.DEFINE_float("feature_weight", 1.0, "Weight of each hidden-state loss.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the weights and the batches.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(".", "tfcompress_out", "distill_gpt"),
    "Directory for the teacher and student `.keras` files.",
)


def load_bytes():
    """`(train, validation)`: pydoc_data.topics as bytes, a contiguous 90/10 split."""
    import numpy as np

    data = np.frombuffer(pydoc_text().encode("utf-8"), dtype=np.uint8)
    cut = int(0.9 * len(data))
    return data[:cut], data[cut:]


def random_windows(data, steps, seed):
    """`(x, y)` arrays of `steps * batch_size` random next-byte windows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    count, length = steps * _BATCH_SIZE.value, _SEQ_LEN.value
    starts = rng.integers(0, len(data) - length - 1, count)
    windows = np.stack([data[s : s + length + 1] for s in starts]).astype("int32")
    tokens = windows[:, :-1]
    return {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}, windows[:, 1:]


def validation_perplexity(lm, data):
    import numpy as np

    from tfcompress.evaluation import perplexity

    count = len(data) // _SEQ_LEN.value
    tokens = data[: count * _SEQ_LEN.value].reshape(count, _SEQ_LEN.value).astype("int32")
    return perplexity(
        lambda t: lm.predict_on_batch({"token_ids": t, "padding_mask": np.ones_like(t)}),
        tokens,
        batch_size=64,
    )


def train_teacher(keras, keras_hub, train):
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=256,
        num_layers=_TEACHER_LAYERS.value,
        num_heads=_NUM_HEADS.value,
        hidden_dim=_HIDDEN.value,
        intermediate_dim=4 * _HIDDEN.value,
        max_sequence_length=_SEQ_LEN.value,
        name="gpt2_backbone",
    )
    teacher = keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)
    teacher.compile(
        optimizer=keras.optimizers.Adam(_LEARNING_RATE.value),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x, y = random_windows(train, _TEACHER_STEPS.value, _SEED.value + 1)
    teacher.fit(x, y, batch_size=_BATCH_SIZE.value, epochs=1, shuffle=False, verbose=0)
    return teacher


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import keras
    import keras_hub

    from tfcompress.distillation import Distiller, make_student

    keras.utils.set_random_seed(_SEED.value)
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    train, val = load_bytes()
    print(f"[data] {len(train):,} training and {len(val):,} validation bytes")

    if _TEACHER_PATH.value:
        teacher = keras.saving.load_model(_TEACHER_PATH.value)
        print(f"[teacher] loaded {_TEACHER_PATH.value}")
    else:
        teacher = train_teacher(keras, keras_hub, train)
        teacher_path = os.path.join(_OUTPUT_DIR.value, "teacher.keras")
        teacher.save(teacher_path)
        print(f"[teacher] trained {_TEACHER_STEPS.value} steps, saved {teacher_path}")
    teacher_ppl = validation_perplexity(teacher, val)
    print(
        f"[teacher] {teacher.count_params():,} parameters, validation perplexity {teacher_ppl:.3f}"
    )

    total = len(teacher.backbone.transformer_layers)
    if _STUDENT_LAYERS.value:
        chosen = [int(i) for i in _STUDENT_LAYERS.value]
        student = make_student(teacher, layers=chosen)
    else:
        student = make_student(teacher, num_layers=max(1, total // 2))
        chosen = [(i + 1) * total // max(1, total // 2) - 1 for i in range(max(1, total // 2))]
    cut_ppl = validation_perplexity(student, val)
    print(
        f"[student] teacher blocks {chosen}: {student.count_params():,} parameters, "
        f"validation perplexity {cut_ppl:.3f} before distillation"
    )

    feature_losses = None
    if _FEATURE_LOSS.value:
        feature_losses = [
            (
                f"gpt2_backbone/transformer_layer_{t}",
                f"gpt2_backbone/transformer_layer_{s}",
                _FEATURE_LOSS.value,
                _FEATURE_WEIGHT.value,
            )
            for s, t in enumerate(chosen)
        ]
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(_LEARNING_RATE.value),
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=_ALPHA.value,
        temperature=_TEMPERATURE.value,
        feature_losses=feature_losses,
    )
    x, y = random_windows(train, _STEPS.value, _SEED.value)
    history = distiller.fit(x, y, batch_size=_BATCH_SIZE.value, epochs=1, shuffle=False, verbose=0)
    logs = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    print(f"[distil] {_STEPS.value} steps; last losses {logs}")

    student_ppl = validation_perplexity(student, val)
    print(
        f"[evaluate] validation perplexity {student_ppl:.3f} ({math.log2(student_ppl):.3f} bits/byte); "
        f"cut student {cut_ppl:.3f}, teacher {teacher_ppl:.3f}"
    )
    student_path = os.path.join(_OUTPUT_DIR.value, "student.keras")
    student.save(student_path)
    print(f"[save] {student_path}")


if __name__ == "__main__":
    app.run(main)
