"""Teacher outputs computed once for a fixed dataset, carried in the batches."""

import keras
from keras import ops, tree

from tfcompress.core.checks import check_int
from tfcompress.distillation.capture_outputs import capture_outputs

INPUTS = "tfcompress_inputs"
LOGITS = "tfcompress_teacher_logits"
INDICES = "tfcompress_teacher_indices"
FEATURES = "tfcompress_teacher_features"


def is_cached(x):
    return isinstance(x, dict) and INPUTS in x


def check_use(pairs, output_mode, distillation_loss_fn, cached):
    """Raises unless the cached teacher outputs (a `split` result) serve the compiled losses."""
    _, logits, indices, features = cached
    missing = [pair.teacher_path for pair in pairs if pair.teacher_path not in features]
    if missing:
        held = sorted(features) or "none"
        raise ValueError(
            f"Batches from `cache_teacher` hold the teacher's hidden states of {held}, "
            f"but `feature_losses` need its hidden states at {missing}. Call "
            "`cache_teacher` after compiling with these `feature_losses`, or fit "
            "on the original dataset."
        )
    if output_mode is not None and logits is None:
        raise ValueError(
            "Batches from `cache_teacher` hold no teacher outputs (it ran while "
            "`distill_outputs=False`), but the compiled loss distils outputs. "
            "Call `cache_teacher` after this compile, or fit on the original dataset."
        )
    if indices is not None and output_mode != "kl":
        raise ValueError(
            "Top-k cached teacher outputs work with the KL loss only "
            f"(distillation_loss_fn={distillation_loss_fn!r}). "
            "Cache full logits (top_k=None)."
        )


def split(x):
    """(model inputs, teacher logits, top-k values or None, top-k indices or None,
    {teacher layer path: hidden state})."""
    return x[INPUTS], x.get(LOGITS), x.get(INDICES), x.get(FEATURES, {})


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


def cache_teacher_outputs(teacher, dataset, top_k=None, feature_layers=None, outputs=True):
    """The batches of `dataset` with the teacher's logits (or top-k) added to x.

    `feature_layers` maps teacher layer paths to layers whose outputs are
    cached too; `outputs=False` leaves the logits out.
    """
    top_k = check_int(
        top_k, "top_k", 1, allow_none=True, expected="None (full logits) or an int >= 1"
    )
    feature_layers = dict(feature_layers or {})
    batches = []
    for batch in dataset:
        x, y, sample_weight = _unpack(batch)
        if y is None and sample_weight is not None:
            raise ValueError("Batches of (x, None, sample_weight) cannot be cached; give y.")
        # The teacher's own call, as in training: a keras-hub task's
        # `predict_on_batch` would send token ids through its preprocessor.
        with capture_outputs(feature_layers.values()) as captured:
            logits = teacher(x, training=False)
        teacher_part = {}
        if feature_layers:
            teacher_part[FEATURES] = {
                path: _numpy(captured[layer]) for path, layer in feature_layers.items()
            }
        x = {INPUTS: tree.map_structure(_numpy, x), **teacher_part}
        if outputs:
            x.update(_logits_part(logits, top_k))
        batches.append(tuple(v for v in (x, _numpy(y), _numpy(sample_weight)) if v is not None))
    if not batches:
        raise ValueError("`dataset` yielded no batches to cache.")
    return _CachedBatches(batches)


def _logits_part(logits, top_k):
    if keras.tree.is_nested(logits):
        raise ValueError(
            "The teacher returns several outputs; only a single logits output can be "
            "cached. Compile with `distill_outputs=False` to cache hidden states only."
        )
    if top_k is None:
        return {LOGITS: _numpy(logits)}
    if top_k > logits.shape[-1]:
        raise ValueError(f"`top_k`={top_k} exceeds the teacher's {logits.shape[-1]} classes.")
    values, indices = ops.top_k(logits, top_k)
    return {LOGITS: _numpy(values), INDICES: _numpy(indices)}
