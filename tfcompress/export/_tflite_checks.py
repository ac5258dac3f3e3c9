"""Argument checks of `to_tflite`, run before any conversion work."""

import os
import re

from tfcompress.core.checks import check_int, check_number, ensure_keras3_model
from tfcompress.export import converter

_VALID_SCOPE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


def check_arguments(
    target, int8_io, allow_flex, verify_, tolerance, path, batch_size, sequence_length, rewrites
):
    """Raises for any `to_tflite` argument that is out of range or of the wrong type.

    Raises:
        ValueError: for an unknown target, `int8_io` on a float target, or an
            out-of-range tolerance / batch size / sequence length.
        TypeError: for non-bool flags and a `path` that is no path.
    """
    if target not in converter.TARGETS:
        raise ValueError(
            f"`target` must be one of {', '.join(repr(t) for t in converter.TARGETS)}. "
            f"Received: target={target!r}"
        )
    for name, value in (
        ("int8_io", int8_io),
        ("allow_flex", allow_flex),
        ("verify", verify_),
        ("rewrites", rewrites),
    ):
        if not isinstance(value, bool):
            raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    if int8_io and target not in converter.INTEGER_TARGETS:
        raise ValueError(
            f"`int8_io=True` needs a full-integer target ('int8', or 'int16x8' whose "
            f"I/O is int16); target={target!r} keeps float inputs and outputs. "
            "Drop int8_io or change the target."
        )
    check_number(
        tolerance, "tolerance", 0, open_low=True, allow_none=True, expected="a positive number"
    )
    for name, value, meaning in (
        ("batch_size", batch_size, "a fixed batch, e.g. 1 for on-device inference"),
        ("sequence_length", sequence_length, "a fixed number of tokens"),
    ):
        check_int(
            value,
            name,
            1,
            allow_none=True,
            expected=f"None (any size) or a positive int ({meaning})",
        )
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike. Received: {type(path).__name__}")


def check_model(model, target, representative_data):
    """Raises unless `model` is a Keras 3 model TensorFlow can trace and
    `representative_data` is given only to a target that uses it.

    Raises:
        TypeError: when `model` is no Keras 3 model.
        ValueError: for a model name TensorFlow cannot use as a scope name
            (naming how to rename it), or `representative_data` on a target
            that needs none.
    """
    ensure_keras3_model(model, "model")
    # Checked up front: TensorFlow fails mid-trace on such a name and leaves
    # Keras's name-scope stack dirty for the rest of the process.
    if not _VALID_SCOPE.match(model.name):
        raise ValueError(
            f"`model` is named {model.name!r}, which TensorFlow cannot use as a "
            "scope name when tracing it for conversion (it must start with a "
            "letter, digit or '.'). Name the model, e.g. "
            "`super().__init__(name='my_model')` or `keras.Model(..., name='my_model')`."
        )
    if representative_data is not None and target not in converter.INTEGER_TARGETS:
        raise ValueError(
            f"`representative_data` is only used by the 'int8' and 'int16x8' targets; "
            f"target={target!r} needs none. Drop it or change the target."
        )


def calibration_error(target):
    """The error for an integer target given no calibration data."""
    return ValueError(
        f"target={target!r} needs calibration data: pass representative_data=... (an "
        "array, tf.data.Dataset or generator of input batches)"
        + (
            ", or quantize the model with tfcompress.quantization.quantize_model first"
            if target == "int8"
            else " (fake-quant ranges are 8-bit; int16 activations need calibration)"
        )
    )
