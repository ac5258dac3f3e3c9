"""Every private TensorFlow Lite converter API tfcompress relies on, in one place.

The stock converter cannot calibrate, let tfcompress edit the recorded
ranges, then quantize from them; its private calibrate-only flag and the
calibration wrapper can. The flatbuffer schema module ships with
ai-edge-litert, and privately with TensorFlow. A TensorFlow release that
moves one of them breaks here, with a message naming it, and
`tests/export/_tflite_internals_test.py` says so. Seen on TensorFlow 2.21 and
ai-edge-litert 2.3. The interpreter's privates are in
`tfcompress/runtime/_litert_internals.py` (the runtime imports no TensorFlow).
"""

import tensorflow as tf

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:
    from tensorflow.lite.python import schema_py_generated as schema

__all__ = ["TFLiteInternalsError", "calibrate_only", "quantize_calibrated", "schema"]


class TFLiteInternalsError(RuntimeError):
    """A private TensorFlow Lite API tfcompress relies on is gone or changed."""


def _missing(what, error=None):
    return TFLiteInternalsError(
        f"TensorFlow {tf.__version__} has no {what}, which tfcompress relies on"
        f"{f' ({error})' if error else ''}. Install a TensorFlow release tfcompress "
        "supports (2.21), or update tfcompress/export/_tflite_internals.py."
    )


def calibrate_only(converter):
    """Makes `converter.convert()` return the calibrated, unquantized model."""
    if not hasattr(converter, "_experimental_calibrate_only"):
        raise _missing("`TFLiteConverter._experimental_calibrate_only`")
    converter._experimental_calibrate_only = True
    return converter


def _calibration_wrapper(content):
    try:
        # Private module, imported only for the target that needs it.
        from tensorflow.lite.python.optimize import calibrator
    except ImportError as error:
        raise _missing("`tensorflow.lite.python.optimize.calibrator`", error) from error
    wrapper = getattr(calibrator.Calibrator(content), "_calibrator", None)
    if wrapper is None or not hasattr(wrapper, "QuantizeModel"):
        raise _missing("`Calibrator._calibrator.QuantizeModel`")
    return wrapper


def quantize_calibrated(
    content, input_type, output_type, activations_type, bias_type, allow_float=True
):
    """Quantizes a calibrated flatbuffer from the ranges it records, feeding no data.

    Args:
        content: the bytes `calibrate_only` conversion returned (ranges may
            have been edited since).
        input_type, output_type, activations_type, bias_type: `tf.DType`s.
        allow_float: keep ops without an integer kernel in float.

    Returns:
        The quantized flatbuffer bytes.
    """

    def number(dtype):
        return tf.as_dtype(dtype).as_numpy_dtype().dtype.num

    return _calibration_wrapper(content).QuantizeModel(
        number(input_type),
        number(output_type),
        allow_float,
        number(activations_type),
        number(bias_type),
        False,
        False,
    )
