"""The error for a model TensorFlow Lite Micro cannot load or run, naming the op."""

import re

from tfcompress.export import flatbuffer

_FAILED_NODE = re.compile(r"Node (\w+) \(number (\d+)f?\) failed to (prepare|invoke)")
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)'")


class TFLMError(ValueError):
    """TFLite Micro cannot load or run the model.

    Attributes:
        op: the op TFLM rejected (e.g. `"FULLY_CONNECTED"`), or None.
        log: TFLM's own messages.
    """

    def __init__(self, message, op=None, log=""):
        self.op = op
        self.log = log
        super().__init__(message)


def _op_types(subgraph, op):
    return ", ".join(
        f"{role} {[flatbuffer.type_name(subgraph.tensors[i]) for i in indices if i >= 0]}"
        for role, indices in (("inputs", op.inputs), ("outputs", op.outputs))
    )


def _is_float(subgraph, op):
    return any(
        flatbuffer.type_name(subgraph.tensors[i]) == "FLOAT32"
        for i in list(op.inputs) + list(op.outputs)
        if i >= 0
    )


_FLOAT_OP = (
    "It is a float op left in an integer model (float activations: kept in "
    "float by the converter between DEQUANTIZE and QUANTIZE, or int8 weights "
    "with float inputs from dynamic-range quantization). Export a "
    "full-integer model: `tfcompress.export.to_tflite(model, 'int8', "
    "int8_io=True, representative_data=...)`, which fails at conversion on "
    "an op without an int8 kernel"
)


def describe_failure(model, log, stage):
    """The `TFLMError` for a model TFLM refused, naming the op and the fix."""
    subgraph = model.subgraphs[0]
    said = f"TFLM said: {log.strip() or '(nothing)'}"
    missing = _MISSING_OP.search(log)
    found = _FAILED_NODE.search(log)
    if missing is not None:
        name = missing.group(1)
        index = flatbuffer.op_names(model).index(name)
        problem = f"TensorFlow Lite Micro has no kernel for op {name}"
        fix = (
            "Replace the layer that produces it with one TFLM runs (ops with a "
            "TFLM kernel: `tfcompress.export.tflm_ops.TFLM_METHODS`)"
            + (", e.g. ReLU or hard-swish instead of GELU" if name == "GELU" else "")
        )
    elif found is not None:
        name, index = found.group(1), int(found.group(2))
        problem = f"TensorFlow Lite Micro cannot {stage} op {name}"
        fix = (
            "TFLM has no kernel for this op with these tensor types: change the "
            "layer that produces it, or its quantization"
        )
    else:
        return TFLMError(f"TensorFlow Lite Micro failed to {stage} the model. {said}", log=log)
    op = subgraph.operators[index]
    if _is_float(subgraph, op):
        fix = _FLOAT_OP + (", or replace the layer" if missing is not None else "")
    return TFLMError(
        f"{problem} (op #{index}; {_op_types(subgraph, op)}). {fix}. {said}",
        op=name,
        log=log,
    )
