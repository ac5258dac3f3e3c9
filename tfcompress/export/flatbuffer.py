"""Reading and writing TFLite flatbuffers with the generated schema object API."""

import os
import pathlib

import flatbuffers
import numpy as np

from tfcompress.export._tflite_internals import schema

_BUILTIN_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
_TYPE_NAMES = {
    value: name for name, value in vars(schema.TensorType).items() if not name.startswith("_")
}
_TYPE_BYTES = {
    "FLOAT32": 4,
    "FLOAT16": 2,
    "BFLOAT16": 2,
    "FLOAT64": 8,
    "INT64": 8,
    "UINT64": 8,
    "INT32": 4,
    "UINT32": 4,
    "INT16": 2,
    "UINT16": 2,
    "INT8": 1,
    "UINT8": 1,
    "BOOL": 1,
    "INT4": 1,
    "COMPLEX64": 8,
    "COMPLEX128": 16,
}


def read_bytes(tflite, arg_name="tflite"):
    """Returns flatbuffer bytes from bytes or a path, checking the 'TFL3' identifier."""
    if isinstance(tflite, (bytes, bytearray, memoryview)):
        content, where = bytes(tflite), f"`{arg_name}`"
    elif isinstance(tflite, (str, os.PathLike)):
        path = pathlib.Path(tflite)
        if not path.is_file():
            raise ValueError(f"`{arg_name}` must be an existing .tflite file. Received: {tflite!r}")
        content, where = path.read_bytes(), f"The file {str(path)!r}"
    else:
        raise TypeError(
            f"`{arg_name}` must be TFLite flatbuffer bytes or a path. Received: "
            f"{type(tflite).__name__}."
        )
    if len(content) < 8 or content[4:8] != b"TFL3":
        raise ValueError(
            f"{where} is not a valid TFLite flatbuffer (no 'TFL3' identifier at bytes 4..8)."
        )
    return content


def read_model(content):
    """Unpacks flatbuffer bytes into a mutable `schema.ModelT`."""
    return schema.ModelT.InitFromPackedBuf(content, 0)


def builtin_code(model, op):
    """The builtin operator code of `op` (see schema_utils: max of both fields)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def op_name(model, op):
    """`"CONV_2D"` for builtins, the custom code (e.g. `"FlexCumprod"`) otherwise."""
    code = builtin_code(model, op)
    if code == schema.BuiltinOperator.CUSTOM:
        custom = model.operatorCodes[op.opcodeIndex].customCode
        return custom.decode() if isinstance(custom, bytes) else str(custom)
    return _BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


def op_names(model, subgraph=0):
    """Op names of one subgraph in execution order."""
    return [op_name(model, op) for op in model.subgraphs[subgraph].operators]


def is_custom(model, op):
    return builtin_code(model, op) == schema.BuiltinOperator.CUSTOM


def type_name(tensor):
    return _TYPE_NAMES.get(tensor.type, f"TYPE_{tensor.type}")


def tensor_bytes(tensor):
    """Bytes of a tensor at its stored shape (dynamic dimensions count as 1)."""
    shape = [max(int(d), 1) for d in (tensor.shape if tensor.shape is not None else [])]
    return int(np.prod(shape, dtype=np.int64)) * _TYPE_BYTES.get(type_name(tensor), 4)


def has_data(model, tensor):
    """True for constant tensors (weights): their buffer holds data."""
    if tensor.buffer <= 0 or tensor.buffer >= len(model.buffers):
        return False
    buffer = model.buffers[tensor.buffer]
    return (buffer.data is not None and len(buffer.data) > 0) or bool(buffer.size)


def has_external_buffers(model):
    """True when some weights sit after the flatbuffer (files over 2 GB).

    `pack` would drop them: rewrites must leave such files alone.
    """
    return any((buffer.offset or 0) > 1 for buffer in model.buffers or [])


def editable_model(tflite, arg_name="tflite"):
    """`(flatbuffer bytes, schema.ModelT or None)` for a rewrite of `tflite`.

    The model is None for files whose weights sit after the flatbuffer:
    `pack` would drop them, so rewrites return such files unchanged.
    """
    content = read_bytes(tflite, arg_name)
    model = read_model(content)
    return content, (None if has_external_buffers(model) else model)


def constant_values(model, tensor, dtype):
    """A constant tensor's stored values as a flat numpy array of `dtype`, or None."""
    if not has_data(model, tensor):
        return None
    data = model.buffers[tensor.buffer].data
    if data is None:  # stored after the flatbuffer (see has_external_buffers)
        return None
    return np.frombuffer(bytes(bytearray(data)), dtype)


def opcode_index(model, code):
    """Index of the operator code for builtin `code`, added if the model lacks it."""
    for i, existing in enumerate(model.operatorCodes):
        if max(existing.builtinCode, existing.deprecatedBuiltinCode) == code:
            return i
    new = schema.OperatorCodeT()
    new.builtinCode = code
    new.deprecatedBuiltinCode = min(code, schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    new.version = 1
    model.operatorCodes.append(new)
    return len(model.operatorCodes) - 1


def new_tensor(subgraph, like, suffix, tensor_type):
    """Appends a tensor shaped like `like` (named like it + `suffix`); returns its index."""
    tensor = schema.TensorT()
    tensor.name = like.name + suffix.encode()
    tensor.shape = like.shape
    tensor.shapeSignature = like.shapeSignature
    tensor.type = tensor_type
    tensor.buffer = 0
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def new_op(opcode, inputs, outputs, options_type=None, options=None):
    """A new `schema.OperatorT` (not yet placed in any subgraph)."""
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = inputs
    op.outputs = outputs
    if options is not None:
        op.builtinOptionsType = options_type
        op.builtinOptions = options
    return op


class _AlignedBuilder(flatbuffers.Builder):
    """Builder placing byte vectors (tensor buffers) on 16-byte boundaries.

    The schema asks for `force_align: 16` on buffer data, which the Python
    builder ignores; kernels reading float/int16 weights rely on it.
    """

    def CreateNumpyVector(self, x):
        if x.dtype != np.uint8:
            return super().CreateNumpyVector(x)
        payload = x.tobytes()
        self.StartVector(1, len(payload), 16)
        self.head = self.head - len(payload)
        self.Bytes[self.head : self.head + len(payload)] = payload
        self.vectorNumElems = len(payload)
        return self.EndVector()


def pack(model):
    """Serializes a `schema.ModelT` to flatbuffer bytes with the 'TFL3' identifier."""
    builder = _AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
