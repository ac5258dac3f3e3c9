"""`tf.lite.TFLiteConverter` settings for each export target."""

import contextlib
import functools
import io
import re
import tempfile
import warnings

import keras
import tensorflow as tf

from tfcompress.export.int16x8 import convert_int16x8

TARGETS = ("float32", "float16", "dynamic_int8", "int8", "int16x8")
INTEGER_TARGETS = ("int8", "int16x8")


def _flex_ops(message):
    match = re.search(r"TF Select ops: ([^\n]+)", message)
    return match.group(1).strip() if match else None


def _tracing_error(wrapper):
    """The error Keras's SavedModel export raises for `wrapper`, or None.

    `from_keras_model` swallows it and falls back to a legacy tf.keras path that
    then fails with an unrelated "'NoneType' object is not callable".
    """
    signature = [tf.TensorSpec(x.shape, x.dtype, name=x.name) for x in wrapper.inputs]
    archive = keras.export.ExportArchive()
    archive.track(wrapper)
    try:
        with tempfile.TemporaryDirectory() as directory:
            archive.add_endpoint(
                "serve",
                functools.partial(wrapper.__call__, training=False),
                signature if len(signature) == 1 else [signature],
            )
            archive.write_out(directory, verbose=False)
    except Exception as e:
        return e
    return None


def convert(wrapper, target, samples=None, int_io=False, allow_flex=False):
    """Converts a functional Keras model to TFLite flatbuffer bytes.

    Args:
        wrapper: a functional `keras.Model` (see `functional_wrapper`).
        target: one of `TARGETS`.
        samples: calibration samples (`[{input name: array}]`) for "int8" and
            "int16x8". Without them "int8" relies on the model's fake-quant
            ranges (quantization-aware training).
        int_io: integer inputs/outputs (int8 for "int8", int16 for "int16x8").
        allow_flex: let TensorFlow ops without a builtin run as Flex ops.

    Returns:
        The flatbuffer bytes.

    Raises:
        ValueError: the model needs Flex ops and `allow_flex` is False.
    """
    converter = tf.lite.TFLiteConverter.from_keras_model(wrapper)
    builtins = {
        "int8": tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
        "int16x8": tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
    }.get(target, tf.lite.OpsSet.TFLITE_BUILTINS)
    if target == "int8" and samples is None:
        # Quantization-aware models: the fake-quant ranges are the calibration;
        # the converter refuses TFLITE_BUILTINS_INT8 without a dataset.
        builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [builtins] + (
        [tf.lite.OpsSet.SELECT_TF_OPS] if allow_flex else []
    )
    if target != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if target == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if samples is not None:
        converter.representative_dataset = lambda: iter(samples)
    if int_io and target == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        # Keras prints "Saved artifact at ..." for the intermediate SavedModel,
        # and TF's calibrator warns about its own use of tf.lite.Interpreter.
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            if target == "int16x8":
                return convert_int16x8(converter, int_io)
            return converter.convert()
    except Exception as e:
        if isinstance(e, TypeError) and "'NoneType' object is not callable" in str(e):
            cause = _tracing_error(wrapper)
            if cause is not None:
                raise ValueError(
                    f"TensorFlow could not trace the model for conversion: {cause}"
                ) from cause
        flex = _flex_ops(str(e))
        if flex and not allow_flex:
            raise ValueError(
                f"The model uses TensorFlow ops with no TFLite builtin: {flex}. "
                "Pass allow_flex=True to export them as Flex (TF Select) ops, which "
                "need a runtime built with the Flex delegate (not ai-edge-litert, "
                "TF 2.21's tf.lite.Interpreter or TFLite Micro), or replace those ops."
            ) from e
        raise
