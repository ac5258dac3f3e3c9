"""Cut a shallower student from a keras-hub teacher (DistilBERT initialisation)."""

from tfcompress.core.checks import check_int, is_int

_SUPPORTED = (
    "`make_student` supports keras-hub backbones whose config has "
    "`num_layers` and whose blocks are `backbone.transformer_layers` "
    "(`transformer_layer_{i}`: BertBackbone, GPT2Backbone, Llama3Backbone, "
    "LlamaBackbone and the like), and keras-hub task models holding one as "
    "`.backbone` (GPT2CausalLM, Llama3CausalLM, BertTextClassifier, ...)"
)


def _evenly_spaced(total, count):
    # The last block is always kept: it is the one the final norm and the
    # head were trained to read.
    return [(i + 1) * total // count - 1 for i in range(count)]


def _chosen_layers(layers, num_layers, total):
    if (layers is None) == (num_layers is None):
        raise ValueError(
            "Pass exactly one of `layers` (teacher block indices) and "
            f"`num_layers` (how many evenly spaced blocks). Received: "
            f"layers={layers!r}, num_layers={num_layers!r}"
        )
    if num_layers is not None:
        num_layers = check_int(
            num_layers,
            "num_layers",
            1,
            total,
            expected=f"an integer in [1, {total}] (the teacher has {total} transformer blocks)",
        )
        return _evenly_spaced(total, num_layers)
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(
            "`layers` must be a list of teacher block indices, e.g. [0, 2, 4]. "
            f"Received: layers={layers!r}"
        )
    chosen = list(layers)
    if not chosen or not all(map(is_int, chosen)):
        raise ValueError(
            "`layers` must be a non-empty list of integer block indices, e.g. "
            f"[0, 2, 4]. Received: layers={layers!r}"
        )
    if any(not 0 <= i < total for i in chosen):
        raise ValueError(
            f"`layers` indices must be in [0, {total - 1}] (the teacher has "
            f"{total} transformer blocks). Received: layers={layers!r}"
        )
    if any(b <= a for a, b in zip(chosen, chosen[1:])):
        raise ValueError(
            "`layers` must be strictly increasing (each teacher block at most "
            "once, in the teacher's order, so the residual stream each block "
            f"reads keeps its meaning). Received: layers={layers!r}; pass "
            f"{sorted(set(chosen))} instead."
        )
    return [int(i) for i in chosen]


def _split_backbone(teacher):
    import keras_hub

    if isinstance(teacher, keras_hub.models.Backbone):
        return None, teacher
    backbone = getattr(teacher, "backbone", None)
    if isinstance(teacher, keras_hub.models.Task) and isinstance(
        backbone, keras_hub.models.Backbone
    ):
        return teacher, backbone
    raise TypeError(
        f"{_SUPPORTED}. Received: teacher of type {type(teacher).__name__}. "
        "For another model, build the student yourself and pass it to "
        "`Distiller`."
    )


def _check_backbone(backbone):
    config = backbone.get_config()
    blocks = getattr(backbone, "transformer_layers", None)
    total = config.get("num_layers")
    if not is_int(total) or not isinstance(blocks, (list, tuple)) or len(blocks) != total:
        raise TypeError(
            f"{_SUPPORTED}. Received: a {type(backbone).__name__} with "
            f"num_layers={total!r} in its config and "
            f"{'no' if blocks is None else len(blocks)} `transformer_layers`."
        )
    return config, blocks


def _other_variables(model, excluded):
    excluded_ids = {id(v) for v in excluded}
    return [v for v in model.weights if id(v) not in excluded_ids]


def _copy_variables(sources, targets, what):
    """Copies `sources` into `targets` pairwise; both come in build order."""
    if len(sources) != len(targets):
        raise ValueError(
            f"The student's {what} has {len(targets)} variables and the "
            f"teacher's {len(sources)}; the model cannot be cut by rebuilding "
            f"it from its config. {_SUPPORTED}."
        )
    for source, target in zip(sources, targets):
        source_name = source.path.split("/")[-2:]
        target_name = target.path.split("/")[-2:]
        if source_name != target_name or tuple(source.shape) != tuple(target.shape):
            raise ValueError(
                f"The student's {what} variable {target.path} {target.shape} does "
                f"not match the teacher's {source.path} {source.shape}; the model "
                f"cannot be cut by rebuilding it from its config. {_SUPPORTED}."
            )
        target.assign(source.value)


def _cut_backbone(backbone, chosen, config):
    # A frozen teacher (distillers set `trainable = False`) must not hand its
    # flag to the model that is about to be trained.
    student = type(backbone).from_config({**config, "num_layers": len(chosen), "trainable": True})
    teacher_blocks = backbone.transformer_layers
    for student_block, index in zip(student.transformer_layers, chosen):
        _copy_variables(
            teacher_blocks[index].weights,
            student_block.weights,
            f"block {student_block.name} (from teacher block {index})",
        )
    student_block_variables = [v for block in student.transformer_layers for v in block.weights]
    teacher_block_variables = [v for block in teacher_blocks for v in block.weights]
    _copy_variables(
        _other_variables(backbone, teacher_block_variables),
        _other_variables(student, student_block_variables),
        "embeddings and final norm",
    )
    return student


def make_student(teacher, layers=None, num_layers=None):
    """Builds a shallower copy of a keras-hub teacher from some of its blocks.

    The student is the teacher's own class, built from the teacher's config
    with fewer `num_layers`. Its embeddings, final norm (and any pooler) and
    its blocks `transformer_layer_0, 1, ...` are copied exactly from the
    teacher's embeddings, final norm and the chosen teacher blocks, as
    DistilBERT was initialised. For a task model (`GPT2CausalLM`,
    `BertTextClassifier`, ...) the task's own weights (a classifier head) are
    copied too, and the student keeps the teacher's preprocessor object (and
    so its tokenizer); its backbone is cut as above. Layer names are the
    teacher's, so `feature_losses` paths such as
    `"gpt2_backbone/transformer_layer_1"` mean the same place in both models.
    The teacher is left unchanged; the student is trainable even when the
    teacher is frozen.

    Args:
        teacher: a keras-hub `Backbone` with `transformer_layers` and a
            `num_layers` config (BERT, GPT-2, Llama 3, ...), or a keras-hub
            `Task` holding one as `.backbone`.
        layers: teacher block indices to keep, strictly increasing (each
            block at most once, in the teacher's order), each in
            `[0, num_teacher_layers)`. Student block `j` is teacher block
            `layers[j]`.
        num_layers: how many blocks to keep instead, evenly spaced and always
            including the last one: teacher block `(i + 1) * n // k - 1` for
            student block `i` (`n` teacher blocks, `k = num_layers`), e.g.
            `[1, 3, 5]` of 6, `[3, 7, 11]` of 12. Pass exactly one of
            `layers` and `num_layers`.

    Returns:
        A new model of the teacher's class with `len(layers)` (or
        `num_layers`) transformer blocks.

    Raises:
        TypeError: if `teacher` is not a supported keras-hub model, or
            `layers` is not a list.
        ValueError: if both or neither of `layers` and `num_layers` are given,
            an index is out of range, repeated or out of order, or the
            rebuilt student's variables do not line up with the teacher's.

    Example:

    ```python
    import keras_hub
    from tfcompress.distillation import make_student

    teacher = keras_hub.models.GPT2CausalLM.from_preset("gpt2_base_en")
    student = make_student(teacher, num_layers=6)  # blocks 1, 3, ..., 11
    bert = keras_hub.models.BertBackbone.from_preset("bert_base_en")
    distilbert_like = make_student(bert, layers=[0, 2, 4, 6, 8, 10])
    ```
    """
    task, backbone = _split_backbone(teacher)
    config, blocks = _check_backbone(backbone)
    chosen = _chosen_layers(layers, num_layers, len(blocks))
    student_backbone = _cut_backbone(backbone, chosen, config)
    if task is None:
        return student_backbone
    task_config = task.get_config()
    task_config["backbone"] = student_backbone
    task_config["preprocessor"] = task.preprocessor
    student = type(task).from_config(task_config)
    _copy_variables(
        _other_variables(task, backbone.weights),
        _other_variables(student, student_backbone.weights),
        f"{type(task).__name__} head",
    )
    return student
