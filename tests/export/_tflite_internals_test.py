"""Each private TensorFlow Lite API tfcompress uses, checked on the installed TF.

A failure here means TensorFlow moved something tfcompress relies on: the
message names it; fix tfcompress/export/_tflite_internals.py.
"""

import contextlib
import io

import numpy as np
import pytest
import tensorflow as tf

from tfcompress.export import _tflite_internals as internals, flatbuffer


def _explain(what):
    return f"TensorFlow {tf.__version__} changed {what}; update tfcompress/export/_tflite_internals.py."


def _calibrating_converter(model):
    data = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([row[None]] for row in data)
    return converter


def test_calibrate_only_then_quantize_from_recorded_ranges(small_dense_model):
    converter = internals.calibrate_only(_calibrating_converter(small_dense_model))
    with contextlib.redirect_stdout(io.StringIO()):
        calibrated = converter.convert()
    ops = flatbuffer.op_names(flatbuffer.read_model(calibrated))
    assert "FULLY_CONNECTED" in ops and "QUANTIZE" not in ops, _explain(
        "what `_experimental_calibrate_only` returns"
    )
    quantized = internals.quantize_calibrated(calibrated, tf.float32, tf.float32, tf.int8, tf.int32)
    assert "QUANTIZE" in flatbuffer.op_names(flatbuffer.read_model(quantized)), _explain(
        "`Calibrator._calibrator.QuantizeModel`"
    )


def test_missing_flag_is_named():
    with pytest.raises(
        internals.TFLiteInternalsError,
        match=r"TensorFlow 2\.\d+.* has no `TFLiteConverter\._experimental_calibrate_only`",
    ):
        internals.calibrate_only(object())


def test_schema_module():
    assert internals.schema.BuiltinOperator.FULLY_CONNECTED == 9, _explain(
        "the flatbuffer schema module"
    )
    assert flatbuffer.schema is internals.schema
