"""16-bit activation / 8-bit weight quantization that also works with integer inputs.

Why the stock converter fails: TFLite quantizes 16x8 models with its older
quantizer (`tensorflow/lite/tools/optimize/quantize_model.cc`), not the MLIR one
used for int8. That quantizer marks every op it cannot quantize to int16
(LESS, SELECT_V2, NEG...) as "real valued" and then demands calibrated min/max
for each of its inputs. The calibrator only records float tensors, so an
integer tensor feeding such an op aborts the conversion with "Max and min for
dynamic tensors should be recorded during calibration". In keras-hub models the
token ids feed `LESS` through `keras.ops.take`'s negative-index handling
(`where(ids < 0, ids + vocab, ids)`), so every text backbone hits it; its
representative data is not the problem (integer tensors are never recorded).

The work-around, on the converter's own calibrated model:
1. give every non-float activation tensor a placeholder min/max. The quantizer
   never quantizes them (integer ops only quantize float tensors), the values
   only satisfy the presence check;
2. quantize with float fallback allowed, so those integer ops stay as they are;
3. SQUARED_DIFFERENCE (LayerNormalization's variance) is quantized to int16 by
   that quantizer but has no int16 kernel in LiteRT 2.x ("SquaredDifference only
   supports FLOAT32 and INT32"): it is moved back to float between a
   DEQUANTIZE and a QUANTIZE with the calibrated output scale.

This uses two private TensorFlow APIs (`converter._experimental_calibrate_only`
and `tensorflow.lite.python.optimize.calibrator`); tests cover the path.
"""

import tensorflow as tf

from tfcompress.export import flatbuffer
from tfcompress.export.flatbuffer import schema

# Ops the 16x8 quantizer converts but LiteRT has no int16 kernel for.
_NO_INT16_KERNEL = (schema.BuiltinOperator.SQUARED_DIFFERENCE,)


def convert_int16x8(converter, dataset, int_io=False):
    """Converts with 16-bit activations and 8-bit weights.

    Args:
        converter: a `tf.lite.TFLiteConverter` with `optimizations`,
            `representative_dataset` and the 16x8 `supported_ops` already set.
        dataset: callable returning an iterator of calibration samples (the same
            one as `converter.representative_dataset`).
        int_io: int16 model inputs/outputs instead of float32.

    Returns:
        The quantized flatbuffer bytes.
    """
    from tensorflow.lite.python.optimize import calibrator  # pylint: disable=g-import-not-at-top

    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    calibrated = converter.convert()
    patched = _add_placeholder_ranges(calibrated)
    io_type = tf.int16 if int_io else tf.float32
    quantized = calibrator.Calibrator(patched).calibrate_and_quantize(
        dataset, io_type, io_type, True, tf.int16, tf.int64
    )
    return _float_islands(quantized)


def _add_placeholder_ranges(content):
    model = flatbuffer.read_model(content)
    floats = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.type in floats or flatbuffer.has_data(model, tensor):
                continue
            if tensor.quantization is None:
                tensor.quantization = schema.QuantizationParametersT()
            if tensor.quantization.min is None or len(tensor.quantization.min) == 0:
                tensor.quantization.min = [0.0]
                tensor.quantization.max = [1.0]
    return flatbuffer.pack(model)


def _new_tensor(subgraph, like, suffix, tensor_type):
    tensor = schema.TensorT()
    tensor.name = like.name + suffix.encode()
    tensor.shape = like.shape
    tensor.shapeSignature = like.shapeSignature
    tensor.type = tensor_type
    tensor.buffer = 0
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _new_op(opcode, inputs, outputs):
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = inputs
    op.outputs = outputs
    return op


def _float_islands(content):
    """Runs ops without an int16 kernel in float: DEQUANTIZE -> op -> QUANTIZE."""
    model = flatbuffer.read_model(content)
    targets = [
        op
        for subgraph in model.subgraphs
        for op in subgraph.operators
        if flatbuffer.builtin_code(model, op) in _NO_INT16_KERNEL
    ]
    if not targets:
        return content
    int16, float32 = schema.TensorType.INT16, schema.TensorType.FLOAT32
    dequantize = flatbuffer.opcode_index(model, schema.BuiltinOperator.DEQUANTIZE)
    quantize = flatbuffer.opcode_index(model, schema.BuiltinOperator.QUANTIZE)
    for subgraph in model.subgraphs:
        operators = []
        for op in subgraph.operators:
            if flatbuffer.builtin_code(model, op) not in _NO_INT16_KERNEL:
                operators.append(op)
                continue
            op.inputs = [int(i) for i in op.inputs]
            op.outputs = [int(i) for i in op.outputs]
            for position, index in enumerate(op.inputs):
                if index >= 0 and subgraph.tensors[index].type == int16:
                    dequantized = _new_tensor(subgraph, subgraph.tensors[index], "/float", float32)
                    operators.append(_new_op(dequantize, [index], [dequantized]))
                    op.inputs[position] = dequantized
            operators.append(op)
            output = op.outputs[0]
            if subgraph.tensors[output].type == int16:
                result = _new_tensor(subgraph, subgraph.tensors[output], "/float", float32)
                op.outputs[0] = result
                operators.append(_new_op(quantize, [result], [output]))
        subgraph.operators = operators
    code = model.operatorCodes[targets[0].opcodeIndex]
    code.version = 1
    return flatbuffer.pack(model)

