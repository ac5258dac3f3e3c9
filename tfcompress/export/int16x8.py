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
2. narrow the calibrated range of softmax inputs to `SOFTMAX_WINDOW` below
   their maximum: masked attention logits (-1e9) otherwise take the whole
   int16 range and every real logit rounds to the same value (measured: the
   attention probabilities of the test BERT went from 0.75 to 1e-3 relative
   error; a masked `keras.layers.Softmax` from 0.87 to 4e-4 absolute error);
3. quantize once, from those ranges, with float fallback allowed so the
   integer ops stay as they are (feeding the data again would overwrite 2.);
4. SQUARED_DIFFERENCE (LayerNormalization's variance) is quantized to int16 by
   that quantizer but has no int16 kernel in LiteRT 2.x ("SquaredDifference only
   supports FLOAT32 and INT32"): it is moved back to float between a
   DEQUANTIZE and a QUANTIZE with the calibrated output scale.

This relies on private TensorFlow APIs (the calibrate-only flag and the
calibration wrapper, both in `tfcompress/export/_tflite_internals.py`);
tests/export/int16x8_test.py covers the path and the stock failure it avoids.
"""

import tensorflow as tf

from tfcompress.export import _tflite_internals as internals, flatbuffer
from tfcompress.export._tflite_internals import schema

# Calibrated range kept below the largest softmax input: logits further down
# have exp() < 1e-27 of the largest. Attention masks write -1e9 there, which
# would otherwise set the int16 scale to ~3e4 and round every real logit to 0.
SOFTMAX_WINDOW = 64.0
# Ops the 16x8 quantizer converts but LiteRT has no int16 kernel for.
_NO_INT16_KERNEL = (schema.BuiltinOperator.SQUARED_DIFFERENCE,)


def convert_int16x8(converter, int_io=False):
    """Converts with 16-bit activations and 8-bit weights.

    Args:
        converter: a `tf.lite.TFLiteConverter` with `optimizations`,
            `representative_dataset` and the 16x8 `supported_ops` already set.
        int_io: int16 model inputs/outputs instead of float32.

    Returns:
        The quantized flatbuffer bytes.
    """
    calibrated = internals.calibrate_only(converter).convert()
    patched = _patch_ranges(calibrated)
    io_type = tf.int16 if int_io else tf.float32
    # Quantized without feeding data again: a second calibration pass would
    # overwrite the patched ranges with the recorded ones.
    quantized = internals.quantize_calibrated(patched, io_type, io_type, tf.int16, tf.int64)
    return _float_islands(quantized)


def _patch_ranges(content):
    model = flatbuffer.read_model(content)
    floats = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if flatbuffer.builtin_code(model, op) == schema.BuiltinOperator.SOFTMAX:
                _clamp_softmax_input(subgraph.tensors[op.inputs[0]])
        for tensor in subgraph.tensors:
            if tensor.type in floats or flatbuffer.has_data(model, tensor):
                continue
            if tensor.quantization is None:
                tensor.quantization = schema.QuantizationParametersT()
            if tensor.quantization.min is None or len(tensor.quantization.min) == 0:
                tensor.quantization.min = [0.0]
                tensor.quantization.max = [1.0]
    return flatbuffer.pack(model)


def _clamp_softmax_input(tensor):
    quantization = tensor.quantization
    if quantization is None or quantization.min is None or len(quantization.min) != 1:
        return
    low, high = float(quantization.min[0]), float(quantization.max[0])
    if high - low > SOFTMAX_WINDOW:
        quantization.min = [high - SOFTMAX_WINDOW]


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
                    dequantized = flatbuffer.new_tensor(
                        subgraph, subgraph.tensors[index], "/float", float32
                    )
                    operators.append(flatbuffer.new_op(dequantize, [index], [dequantized]))
                    op.inputs[position] = dequantized
            operators.append(op)
            output = op.outputs[0]
            if subgraph.tensors[output].type == int16:
                result = flatbuffer.new_tensor(
                    subgraph, subgraph.tensors[output], "/float", float32
                )
                op.outputs[0] = result
                operators.append(flatbuffer.new_op(quantize, [result], [output]))
        subgraph.operators = operators
    code = model.operatorCodes[targets[0].opcodeIndex]
    code.version = 1
    return flatbuffer.pack(model)
