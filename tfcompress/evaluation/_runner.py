"""One way to run a Keras model, a LiteRT model or a callable on batches.

Evaluation works on numbers that already left the model (a LiteRT interpreter
returns numpy arrays), so everything here is numpy; no backend tensors leak out.
"""

import os

import keras
import numpy as np

from tfcompress.core import checks

PATH_TYPES = (str, os.PathLike, bytes, bytearray, memoryview)


def model_kind(model, arg_name="model"):
    """Classifies `model` as "keras", "litert" (anything with `.run`) or "callable".

    Raises:
        TypeError: when `model` is none of those.
    """
    if isinstance(model, keras.Model):
        return "keras"
    if callable(getattr(model, "run", None)):
        return "litert"
    if callable(model) and not isinstance(model, PATH_TYPES):
        return "callable"
    raise TypeError(
        f"`{arg_name}` must be a `keras.Model`, a loaded LiteRT model (anything "
        "with a `.run(inputs)` method, e.g. from `tfcompress.runtime.load`) or a "
        f"callable mapping inputs to outputs. Received: {arg_name}={model!r} of "
        f"type {type(model).__name__}. For a `.tflite` path or bytes, load it "
        "first with `tfcompress.runtime.load(path)`."
    )


def load_litert(path_or_bytes, num_threads=None):
    """Loads a `.tflite` path or flatbuffer bytes with `tfcompress.runtime`."""
    # Imported at call time, so tests can stand in a fake `tfcompress.runtime`.
    from tfcompress import runtime

    return runtime.load(path_or_bytes, num_threads=num_threads)


def call_once(model, kind, inputs):
    """Runs `model` of `kind` once on `inputs` and returns its raw outputs."""
    if kind == "keras":
        return model.predict_on_batch(inputs)
    if kind == "litert":
        return model.run(inputs)
    return model(inputs)


def single_output(outputs, arg_name="model"):
    """Unwraps a one-element list/tuple/dict into a numpy array.

    Raises:
        ValueError: when the model has several outputs.
    """
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise ValueError(
                f"`{arg_name}` returned {len(outputs)} outputs "
                f"({sorted(outputs)}); this metric needs exactly one. Pass a "
                "callable that returns the output to evaluate, e.g. "
                "`lambda x: model(x)['logits']`."
            )
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)):
        if len(outputs) != 1:
            raise ValueError(
                f"`{arg_name}` returned {len(outputs)} outputs; this metric "
                "needs exactly one. Pass a callable that returns the output to "
                "evaluate, e.g. `lambda x: model(x)[0]`."
            )
        outputs = outputs[0]
    return np.asarray(keras.ops.convert_to_numpy(outputs))


def num_samples(x, arg_name="x"):
    """Length of the batch axis shared by every array in the structure `x`.

    Raises:
        ValueError: when `x` is empty, scalar, or its arrays differ in length.
    """
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError(f"`{arg_name}` is empty. Received: {arg_name}={x!r}.")
    lengths = []
    for leaf in leaves:
        shape = np.shape(leaf)
        if not shape:
            raise ValueError(
                f"`{arg_name}` must hold arrays with a batch axis; received a "
                f"scalar {leaf!r}. Add a leading batch axis, e.g. x[None]."
            )
        lengths.append(shape[0])
    if len(set(lengths)) != 1:
        raise ValueError(
            f"Every array in `{arg_name}` must have the same batch size. "
            f"Received batch sizes {lengths}."
        )
    return lengths[0]


def check_same_length(x, y):
    """Raises unless the label array `y` has one entry per sample of `x`."""
    n = num_samples(x)
    if np.shape(y)[:1] != (n,):
        raise ValueError(
            "`x` and `y` must have the same number of samples. Received "
            f"{n} inputs and y.shape={np.shape(y)}. Pass matching slices, e.g. "
            "x[:1000], y[:1000]."
        )
    return n


def class_labels(y, scores):
    """Integer labels shaped like `scores[..., 0]`, from int labels or one-hot."""
    y = np.asarray(y)
    if y.shape == scores.shape:
        return np.argmax(y, axis=-1)
    if y.shape != scores.shape[:-1]:
        raise ValueError(
            "`y` must hold one integer label per prediction (shape "
            f"{scores.shape[:-1]}) or be one-hot like the predictions (shape "
            f"{scores.shape}). Received: y.shape={y.shape}."
        )
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(
                "`y` must hold integer class labels. Received non-integer values, "
                f"e.g. {y.ravel()[:3].tolist()}."
            )
        y = y.astype(np.int64)
    return y


def check_int(value, name, minimum):
    """`value` as an int if it is one >= `minimum`; the message names the argument."""
    return checks.check_int(value, name, minimum, expected=f"an int >= {minimum}")


def take(x, start, stop):
    """Rows `[start, stop)` of every array in the structure `x`."""
    return keras.tree.map_structure(lambda a: np.asarray(a)[start:stop], x)


def _pad_rows(x, count):
    """Appends `count` copies of the last row to every array in `x`."""
    return keras.tree.map_structure(
        lambda a: np.concatenate([a, np.repeat(a[-1:], count, axis=0)]), x
    )


def fixed_batch_size(model):
    """The batch size a LiteRT model's first input is fixed to, else None.

    Only a `shape_signature` (as in `Interpreter.get_input_details()`) says
    whether the batch axis is fixed; without it the runtime is trusted to resize.
    """
    details = getattr(model, "input_details", None)
    if isinstance(details, dict):
        details = list(details.values())
    if not details:
        return None
    first = details[0]
    signature = first.get("shape_signature") if isinstance(first, dict) else None
    if signature is None or len(signature) == 0 or int(signature[0]) <= 0:
        return None
    return int(signature[0])


def predict(model, x, batch_size=32, arg_name="model"):
    """Runs `model` on `x` in batches and concatenates its single output.

    Args:
        model: a `keras.Model`, an object with `.run(inputs)` or a callable.
        x: an array or a structure (list/dict) of arrays sharing a batch axis.
        batch_size: samples per call. A LiteRT model whose input batch axis is
            fixed runs with that batch size, the last batch padded.
        arg_name: the argument name used in error messages.

    Returns:
        A numpy array with `num_samples(x)` rows.
    """
    kind = model_kind(model, arg_name)
    check_int(batch_size, "batch_size", 1)
    x = keras.tree.map_structure(np.asarray, x)
    n = num_samples(x)
    fixed = fixed_batch_size(model) if kind == "litert" else None
    step = fixed or batch_size
    outputs = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        batch = take(x, start, stop)
        if fixed and stop - start < fixed:
            # Repeat the last row so a fixed-batch interpreter gets a full batch.
            batch = _pad_rows(batch, fixed - (stop - start))
        out = single_output(call_once(model, kind, batch), arg_name)
        outputs.append(out[: stop - start])
    return np.concatenate(outputs, axis=0)
