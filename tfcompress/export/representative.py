"""Turning user data (arrays, datasets, generators) into per-input numpy batches."""

import collections

import numpy as np
import tensorflow as tf

from tfcompress.core.batches import drop_labels, iterate_batches

# The TFLite docs suggest a few hundred samples; more only slows calibration.
MAX_CALIBRATION_SAMPLES = 500

InputSpec = collections.namedtuple("InputSpec", ["name", "shape", "dtype"])
InputSpec.__doc__ = "One model input: `shape` includes the batch axis (None)."


def _is_integer(dtype):
    return np.dtype(dtype).kind in "iub"


def _to_numpy(value):
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return value.numpy()
    return np.asarray(value)


def normalize_batch(batch, specs, arg_name):
    """Maps one batch to `{input name: array}` with the inputs' dtypes.

    Args:
        batch: an array (single-input models), a list/tuple with one array per
            input in model order, or a dict keyed by input name. A dataset's
            `(x, y)` pair is reduced to `x`.
        specs: the model's `InputSpec`s.
        arg_name: argument name for error messages.

    Returns:
        `{name: np.ndarray}` with a leading batch axis.
    """
    names = [spec.name for spec in specs]
    batch = drop_labels(batch, len(specs))
    if isinstance(batch, dict):
        missing = sorted(set(names) - set(batch))
        if missing:
            raise ValueError(
                f"`{arg_name}` is missing inputs {missing}; the model's inputs are "
                f"{names}. Received keys: {sorted(batch)}."
            )
        values = [batch[name] for name in names]
    elif isinstance(batch, (list, tuple)):
        if len(batch) != len(specs):
            raise ValueError(
                f"`{arg_name}` has {len(batch)} arrays but the model has "
                f"{len(specs)} inputs {names}; pass one array per input or a dict."
            )
        values = list(batch)
    else:
        if len(specs) != 1:
            raise ValueError(
                f"The model has {len(specs)} inputs {names}; pass `{arg_name}` as a "
                "dict keyed by input name or a list with one array per input."
            )
        values = [batch]
    return {spec.name: _cast(_to_numpy(v), spec, arg_name) for spec, v in zip(specs, values)}


def _cast(value, spec, arg_name):
    rank = len(spec.shape)
    received = value.shape
    if value.ndim == rank - 1:
        value = value[np.newaxis]
    if value.ndim != rank:
        raise ValueError(
            f"`{arg_name}` input {spec.name!r} must have rank {rank} (batch first, "
            f"shape {spec.shape}); received shape {value.shape}."
        )
    fixed = [(axis, size) for axis, size in enumerate(spec.shape) if axis and size is not None]
    if any(value.shape[axis] != size for axis, size in fixed):
        raise ValueError(
            f"`{arg_name}` input {spec.name!r} must have shape {spec.shape} (None: any "
            f"size); received shape {received}. Pad or cut the data to that shape."
        )
    if _is_integer(spec.dtype):
        if value.dtype.kind == "f" and not np.all(np.equal(np.mod(value, 1), 0)):
            raise ValueError(
                f"`{arg_name}` input {spec.name!r} is an integer input ({spec.dtype}) "
                "but received non-integer floats."
            )
        return value.astype(spec.dtype)
    return value.astype(np.float32)


def calibration_samples(data, specs, arg_name="representative_data", limit=MAX_CALIBRATION_SAMPLES):
    """Splits `data` into at most `limit` single-sample dicts.

    A generator is consumed once here; the returned list can be replayed for
    each calibration pass.

    Returns:
        A list of `{input name: array with batch 1}`.
    """
    samples = []
    for batch in iterate_batches(data, arg_name):
        arrays = normalize_batch(batch, specs, arg_name)
        sizes = {array.shape[0] for array in arrays.values()}
        if len(sizes) != 1:
            raise ValueError(
                f"`{arg_name}` inputs disagree on the batch size: "
                f"{ {name: a.shape[0] for name, a in arrays.items()} }."
            )
        for i in range(sizes.pop()):
            samples.append({name: array[i : i + 1] for name, array in arrays.items()})
            if len(samples) >= limit:
                return samples
    if not samples:
        raise ValueError(f"`{arg_name}` produced no samples.")
    return samples


def split_rows(batch, size):
    """`{name: array}` cut into consecutive chunks of `size` rows."""
    rows = len(next(iter(batch.values())))
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, rows, size)]


def merge_chunks(chunks):
    """Joins per-chunk `{name: array}` outputs along the batch axis.

    Outputs without a batch axis (a scalar over the chunk) are stacked, one
    value per chunk, the same way for Keras and TFLite.
    """
    if len(chunks) == 1:
        return chunks[0]
    join = lambda arrays: np.concatenate(arrays) if np.ndim(arrays[0]) else np.stack(arrays)  # noqa: E731
    return {name: join([np.asarray(c[name]) for c in chunks]) for name in chunks[0]}


def stack(samples):
    """Concatenates single-sample dicts into one batch dict."""
    return {name: np.concatenate([s[name] for s in samples]) for name in samples[0]}


def synthetic_batch(specs, batch_size=2, vocabulary_size=100, seed=0):
    """A batch of made-up inputs shaped like real ones.

    Floats are in [0, 1). Integer inputs are taken for a token model's, by
    name: "mask" in the name gives padding masks that are a prefix of ones
    (the first row full, the others of random lengths), "segment" or
    "type_id" gives zeros (one segment), any other integer input ids in
    [0, `vocabulary_size`). Unknown dimensions besides the batch axis
    (sequence length) become 8.

    Returns:
        `{input name: array}`.
    """
    rng = np.random.default_rng(seed)
    batch = {}
    for spec in specs:
        shape = (batch_size,) + tuple(8 if d is None else d for d in spec.shape[1:])
        name = spec.name.lower()
        if not _is_integer(spec.dtype):
            batch[spec.name] = rng.random(shape, dtype=np.float32)
        elif "mask" in name and len(shape) >= 2:
            lengths = rng.integers(1, shape[1] + 1, size=batch_size)
            lengths[0] = shape[1]
            prefix = np.arange(shape[1])[None, :] < lengths[:, None]
            batch[spec.name] = np.broadcast_to(
                prefix.reshape(prefix.shape + (1,) * (len(shape) - 2)), shape
            ).astype(spec.dtype)
        elif "segment" in name or "type_id" in name:
            batch[spec.name] = np.zeros(shape, spec.dtype)
        else:
            batch[spec.name] = rng.integers(0, vocabulary_size, size=shape).astype(spec.dtype)
    return batch
