"""Removing float multiplications by (almost) one from a TFLite model.

`QuantizeWrapper(isolate_input=True)` (and the input-outlier split) multiply
a float tensor by `ISOLATE_FACTOR` (1 + 2^-22) before quantizing it, so that the converter does
not carry the quantization range back into the op that made the tensor (an
int8 GELU or attention matmul that XNNPack would not run). Once converted,
that MUL only costs time: 15 elementwise ops on all-MiniLM-L6-v2, about 1% of
its run time. `remove_identity_multiplies` reconnects the readers of such a
MUL to its input. Only MULs by exactly that factor go: a value moves by
2^-22 of itself, well inside one int8 (or int16) quantization step, and a
user's own multiplication by a number near one stays.
"""

import numpy as np

from tfcompress.core.constants import ISOLATE_FACTOR
from tfcompress.export import flatbuffer
from tfcompress.export.flatbuffer import schema

_FACTOR = np.float32(ISOLATE_FACTOR)


def _identity_input(model, subgraph, op):
    """The non-constant input of `op` if it is a float MUL by `ISOLATE_FACTOR`, else None."""
    if flatbuffer.builtin_code(model, op) != schema.BuiltinOperator.MUL:
        return None
    if len(op.inputs) != 2:
        return None
    options = op.builtinOptions
    if options is not None and getattr(options, "fusedActivationFunction", 0):
        return None
    tensors = [subgraph.tensors[int(i)] for i in op.inputs]
    if any(t.type != schema.TensorType.FLOAT32 for t in tensors):
        return None
    for position, tensor in enumerate(tensors):
        value = flatbuffer.constant_values(model, tensor, np.float32)
        if value is None:
            continue
        other = tensors[1 - position]
        if (
            value.size == 1
            and value[0] == _FACTOR
            and not flatbuffer.has_data(model, other)
            and list(other.shape) == list(subgraph.tensors[int(op.outputs[0])].shape)
        ):
            return int(op.inputs[1 - position])
    return None


def remove_identity_multiplies(tflite):
    """Drops float MUL ops by the constant `ISOLATE_FACTOR` (see module docstring).

    A MUL whose output is a model output is kept; files over 2 GB whose
    weights sit after the flatbuffer come back unchanged.

    Args:
        tflite: flatbuffer bytes or a path to a `.tflite` file.

    Returns:
        `(flatbuffer bytes, number of MUL ops removed)`.

    Raises:
        ValueError: `tflite` is not a TFLite flatbuffer.
    """
    content, model = flatbuffer.editable_model(tflite)
    if model is None:
        return content, 0
    removed = 0
    for subgraph in model.subgraphs:
        outputs = {int(t) for t in subgraph.outputs}
        replaced = {}
        kept = []
        for op in subgraph.operators:
            op.inputs = [replaced.get(int(t), int(t)) for t in op.inputs]
            source = _identity_input(model, subgraph, op)
            if source is not None and int(op.outputs[0]) not in outputs:
                replaced[int(op.outputs[0])] = source
                removed += 1
            else:
                kept.append(op)
        subgraph.operators = kept
    if not removed:
        return content, 0
    return flatbuffer.pack(model), removed
