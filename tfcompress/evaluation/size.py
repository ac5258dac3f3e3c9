"""Size of a model on disk, raw and after gzip, or of a Keras model's weights."""

import os
import zlib

import keras
import numpy as np

from tfcompress.core import checks

_CHUNK = 1 << 20
# zlib with wbits=31 writes the gzip container, so the count matches `gzip -9`
# up to the file name gzip stores in its header.
_GZIP_WBITS = 31


def _gzip_size(chunks):
    compressor = zlib.compressobj(9, zlib.DEFLATED, _GZIP_WBITS)
    total = 0
    for chunk in chunks:
        total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def _file_chunks(path):
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _file_size(path):
    return {
        "raw_bytes": os.path.getsize(path),
        "gzip_bytes": _gzip_size(_file_chunks(path)),
    }


def _directory_size(path):
    raw, gz = 0, 0
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            sizes = _file_size(os.path.join(root, name))
            raw += sizes["raw_bytes"]
            gz += sizes["gzip_bytes"]
    return {"raw_bytes": raw, "gzip_bytes": gz}


def _keras_size(model):
    seen = set()
    params = trainable = stored = 0
    for variable in model.weights:
        if id(variable) in seen:
            continue
        seen.add(id(variable))
        count = int(np.prod(variable.shape))
        params += count
        trainable += count if variable.trainable else 0
        stored += count * np.dtype(keras.backend.standardize_dtype(variable.dtype)).itemsize
    return {
        "params": params,
        "trainable_params": trainable,
        "non_trainable_params": params - trainable,
        "float32_bytes": params * 4,
        "stored_bytes": stored,
    }


def model_size(obj):
    """Measures the size of a serialized model, or the weights of a Keras model.

    For a file (`.tflite`, `.keras`, anything) or bytes, returns the raw size and
    the size after gzip at level 9, which is how TensorFlow Model Optimization
    reports the gain of pruning: zeroed weights only shrink a file once it is
    compressed. A directory (e.g. a SavedModel) counts the sum over its files,
    each gzipped separately.

    For a `keras.Model`, returns parameter counts and their size at float32,
    plus `stored_bytes` at the variables' own dtypes (smaller after
    `model.quantize("int8")`). Nothing is serialized, so there is no gzip size:
    save the model and measure the file for that.

    Args:
        obj: a path (str or `os.PathLike`) to a file or directory, the bytes of
            a serialized model, or a built `keras.Model`.

    Returns:
        For files and bytes: `{"raw_bytes": int, "gzip_bytes": int}`. For a
        Keras model: `{"params", "trainable_params", "non_trainable_params",
        "float32_bytes", "stored_bytes"}`, all ints.

    Raises:
        FileNotFoundError: when the path does not exist.
        ValueError: when the Keras model is not built.
        TypeError: for any other kind of object.

    Example:

    ```python
    size = tfcompress.evaluation.model_size("model.tflite")
    print(size["raw_bytes"], size["gzip_bytes"])
    ```
    """
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        return {"raw_bytes": len(data), "gzip_bytes": _gzip_size([data])}
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if os.path.isdir(path):
            return _directory_size(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"`obj` must be an existing file or directory. Received: obj={path!r}, "
                "which does not exist."
            )
        return _file_size(path)
    if isinstance(obj, keras.Model):
        return _keras_size(checks.ensure_built(obj, "obj"))
    if hasattr(obj, "layers") and hasattr(obj, "weights"):
        # A model from another Keras (tf_keras): say so instead of "not a path".
        checks.ensure_keras3_model(obj, "obj")
    raise TypeError(
        "`obj` must be a file path, the bytes of a serialized model or a "
        f"`keras.Model`. Received: obj={obj!r} of type {type(obj).__name__}."
    )
