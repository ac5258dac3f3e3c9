"""Numpy data in and out of TFLite tensors, quantized with each tensor's parameters."""

import numpy as np

_QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


def prepare_inputs(inputs, details, raw):
    """Maps `inputs` to `{name: array of the tensor's dtype}`.

    Args:
        inputs: one array, a list in the order of `details`, or a dict by name.
        details: `{input name: tensor details}` from the interpreter.
        raw: skip quantizing float data for quantized inputs.
    """
    names = list(details)
    if isinstance(inputs, dict):
        missing = sorted(set(names) - set(inputs))
        extra = sorted(set(inputs) - set(names))
        if missing or extra:
            raise ValueError(
                f"`inputs` keys must be the model's input names {names}. "
                f"Missing: {missing}; unexpected: {extra}."
            )
        values = dict(inputs)
    elif isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise ValueError(
                f"`inputs` has {len(inputs)} arrays but the model has {len(names)} inputs {names}."
            )
        values = dict(zip(names, inputs))
    else:
        if len(names) != 1:
            raise ValueError(
                f"The model has {len(names)} inputs {names}; pass a list or a "
                "dict keyed by input name, not a single array."
            )
        values = {names[0]: inputs}
    return {name: _quantize(np.asarray(values[name]), details[name], raw) for name in names}


def _scale_zero_point(detail):
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def _quantize(value, detail, raw):
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = _scale_zero_point(detail)
    if value.dtype.kind == "f" and dtype.kind in "iu":
        if raw or scale == 0.0 or dtype.type not in _QUANTIZED_DTYPES:
            raise TypeError(
                f"Input {detail['name']!r} expects {dtype.name} values; received "
                f"{value.dtype.name}. Pass integer data (e.g. token ids)"
                + (" or call run(..., raw=False)." if raw else ".")
            )
        info = np.iinfo(dtype)
        value = np.clip(np.round(value / scale + zero_point), info.min, info.max)
    return value.astype(dtype, copy=False)


def dequantize(value, detail, raw):
    """Float32 values of a quantized output (unchanged when `raw` or not quantized)."""
    scale, zero_point = _scale_zero_point(detail)
    if raw or scale == 0.0 or value.dtype.type not in _QUANTIZED_DTYPES:
        return value
    return ((value.astype(np.float32) - zero_point) * scale).astype(np.float32)
