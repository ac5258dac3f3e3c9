"""One reader for the model inputs users hand to tfcompress.

`to_tflite(representative_data=...)`, `to_tflite(sample=...)` and
`quantize_model(representative_data=...)` accept the same forms through
these two functions. TensorFlow is not imported here: a `tf.data.Dataset` is
recognized by its `as_numpy_iterator`, tensors by their `shape` and `dtype`.
"""

import inspect

FORMS = (
    "a numpy array (single-input models), a list with one array per input, a dict "
    "of arrays keyed by input name, a tf.data.Dataset, a list of such dict batches, "
    "or a generator / callable yielding such batches"
)


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def iterate_batches(data, arg_name="representative_data"):
    """Yields the batches of `data`, unchanged.

    A single array, list of arrays or dict is one batch; a list or tuple of
    dicts, a dataset, a generator or any other iterable yields one batch per
    item; a callable (TFLite's `representative_dataset` convention) is called
    once and its iterator read.

    Args:
        data: any of the forms in `FORMS`.
        arg_name: the argument's name, for the error message.

    Yields:
        Raw batches (arrays, lists/tuples or dicts of arrays, `(x, y)` pairs).

    Raises:
        TypeError: `data` is none of those forms (checked before the first
            batch is read).

    Example:
        >>> batches = list(tfcompress.core.iterate_batches(dataset))
    """
    if hasattr(data, "as_numpy_iterator"):
        batches = data.as_numpy_iterator()
    elif isinstance(data, (list, tuple)) and data and all(isinstance(item, dict) for item in data):
        batches = iter(data)
    elif _is_array(data) or isinstance(data, (dict, list, tuple)):
        batches = iter([data])
    elif callable(data) and not inspect.isgenerator(data):
        batches = data()
        if not _iterable(batches):
            raise TypeError(
                f"`{arg_name}` must be {FORMS}. Received: a callable returning "
                f"{type(batches).__name__}."
            )
    elif _iterable(data):
        batches = data
    else:
        raise TypeError(f"`{arg_name}` must be {FORMS}. Received: {type(data).__name__}.")
    return _generate(batches)


def _iterable(value):
    return not isinstance(value, (str, bytes)) and (
        hasattr(value, "__iter__") or hasattr(value, "__next__")
    )


def _generate(batches):
    yield from batches


def drop_labels(batch, num_inputs=None):
    """The inputs of a batch: `x` of a supervised `(x, y)` pair.

    A pair is recognized when the model has one input (`num_inputs=1`), when
    `x` is itself a list or dict, or, with the number of inputs unknown, when
    the batch is a tuple (what a `tf.data.Dataset` of pairs yields); a list of
    two arrays for a two-input model stays as it is.
    """
    if (
        isinstance(batch, (list, tuple))
        and len(batch) == 2
        and (
            num_inputs == 1
            or isinstance(batch[0], (list, tuple, dict))
            or (num_inputs is None and isinstance(batch, tuple))
        )
    ):
        return batch[0]
    return batch


def padding_mask(batch):
    """The keras-hub `padding_mask` of a batch's inputs, or None.

    Labels are dropped first (`drop_labels`), so an `(x, y)` pair gives the
    mask of `x`, as `x` alone does.

    Args:
        batch: one batch, as `iterate_batches` yields it.

    Returns:
        `x["padding_mask"]` (unchanged: an array or tensor) when the inputs
        `x` are a dict holding one, else None.

    Example:
        >>> mask = tfcompress.core.batches.padding_mask((x, y))
    """
    x = drop_labels(batch)
    return x.get("padding_mask") if isinstance(x, dict) else None
