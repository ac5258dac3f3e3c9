"""Teacher outputs computed once for a fixed dataset, carried in the batches."""

import keras
from keras import ops, tree

from tfcompress.core.checks import check_int

INPUTS = "tfcompress_inputs"
LOGITS = "tfcompress_teacher_logits"
INDICES = "tfcompress_teacher_indices"


def is_cached(x):
    return isinstance(x, dict) and LOGITS in x


def check_use(pairs, output_mode, distillation_loss_fn, teacher_indices):
    """Raises unless cached teacher outputs serve the compiled losses."""
    if pairs:
        raise ValueError(
            "Batches from `cache_teacher` hold the teacher's outputs only, "
            "but `feature_losses` need its hidden states. Compile without "
            "`feature_losses`, or fit on the original dataset."
        )
    if output_mode is None:
        raise ValueError(
            "Batches from `cache_teacher` only serve the output term, which "
            "`distill_outputs=False` turned off."
        )
    if teacher_indices is not None and output_mode != "kl":
        raise ValueError(
            "Top-k cached teacher outputs work with the KL loss only "
            f"(distillation_loss_fn={distillation_loss_fn!r}). "
            "Cache full logits (top_k=None)."
        )


def split(x):
    """(model inputs, teacher logits or top-k values, top-k indices or None)."""
    return x[INPUTS], x[LOGITS], x.get(INDICES)


def _unpack(batch):
    if isinstance(batch, (tuple, list)) and 1 <= len(batch) <= 3:
        return (tuple(batch) + (None, None))[:3]
    return batch, None, None


def _numpy(value):
    return None if value is None else keras.ops.convert_to_numpy(value)


class _CachedBatches(keras.utils.PyDataset):
    """The batches of a dataset with the teacher's outputs, held in memory."""

    def __init__(self, batches):
        super().__init__()
        self._batches = batches

    def __len__(self):
        return len(self._batches)

    def __getitem__(self, index):
        return self._batches[index]


def cache_teacher_outputs(teacher, dataset, top_k=None):
    """The batches of `dataset` with the teacher's logits (or top-k) added to x."""
    top_k = check_int(
        top_k, "top_k", 1, allow_none=True, expected="None (full logits) or an int >= 1"
    )
    batches = []
    for batch in dataset:
        x, y, sample_weight = _unpack(batch)
        if y is None and sample_weight is not None:
            raise ValueError("Batches of (x, None, sample_weight) cannot be cached; give y.")
        # The teacher's own call, as in training: a keras-hub task's
        # `predict_on_batch` would send token ids through its preprocessor.
        logits = teacher(x, training=False)
        if keras.tree.is_nested(logits):
            raise ValueError(
                "The teacher returns several outputs; only a single logits output can be cached."
            )
        if top_k is None:
            teacher_part = {LOGITS: _numpy(logits)}
        else:
            if top_k > logits.shape[-1]:
                raise ValueError(
                    f"`top_k`={top_k} exceeds the teacher's {logits.shape[-1]} classes."
                )
            values, indices = ops.top_k(logits, top_k)
            teacher_part = {LOGITS: _numpy(values), INDICES: _numpy(indices)}
        x = {INPUTS: tree.map_structure(_numpy, x), **teacher_part}
        batches.append(tuple(v for v in (x, _numpy(y), _numpy(sample_weight)) if v is not None))
    if not batches:
        raise ValueError("`dataset` yielded no batches to cache.")
    return _CachedBatches(batches)
