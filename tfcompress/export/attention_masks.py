"""Attention masks as additive biases that XNNPack runs.

Keras masks attention scores with `where(mask, scores, large negative)`:
`ops.dot_product_attention` (what `MultiHeadAttention` uses without dropout)
first broadcasts the mask with `logical_and(ones_like(scores), mask)`, and the
`Softmax` layer (the path with dropout) also zeroes masked probabilities with
`where(mask, probabilities, 0)`. The converter turns these into SHAPE, FILL,
LOGICAL_AND and SELECT_V2 ops in every attention block. XNNPack runs none of
them, so each block leaves the delegate for LiteRT's reference kernels on the
full `(batch, heads, queries, keys)` tensor and comes back; on all-MiniLM-L6-v2
at sequence 64 that is about a fifth of the run time.

`additive_attention_masks` computes, once per mask and next to where the mask
is made, `bias = where(mask, 0, -1e30)` and `keep = where(mask, 1, 0)`, and
rewrites each block's ops as ops XNNPack runs:

    SELECT_V2(mask', scores, c) -> SOFTMAX    becomes  ADD(scores, bias) -> SOFTMAX
    SELECT_V2(mask', softmax, 0)              becomes  MUL(softmax, keep)

where `mask'` is `mask` or `logical_and(fill(shape, true), mask)` and `c` is a
constant <= -1e4. The results are unchanged as long as the unmasked scores of
a row are well above `c` (what a mask value is chosen for): a masked score
becomes -1e30 whatever its value (float32 rounding absorbs any score below
~1e22), so its softmax weight is 0 as before, and a fully masked row is
uniform as before. The SHAPE / FILL / LOGICAL_AND ops left without readers are
removed.
"""

import numpy as np

from tfcompress.export import flatbuffer
from tfcompress.export.flatbuffer import schema

_OP = schema.BuiltinOperator
_FLOAT32 = schema.TensorType.FLOAT32
_FLOAT16 = schema.TensorType.FLOAT16
_BOOL = schema.TensorType.BOOL
# A masked score becomes this; |score| < 3e22 is absorbed by float32 rounding,
# and no sum of two such values overflows.
_BIAS = -1e30
# Select constants at or below this are masks (Keras uses -1e9, -3e4 for
# float16, and -0.7 * float32 max in dot_product_attention).
_MASK_THRESHOLD = -1e4
# Ops with effects beyond their outputs are never removed.
_STATEFUL = {
    _OP.ASSIGN_VARIABLE,
    _OP.CALL_ONCE,
    _OP.IF,
    _OP.READ_VARIABLE,
    _OP.VAR_HANDLE,
    _OP.WHILE,
}


def _constant(model, tensor):
    """The value of a constant tensor as a flat numpy array, or None."""
    dtype = {_FLOAT32: np.float32, _FLOAT16: np.float16, _BOOL: np.bool_}.get(tensor.type)
    return None if dtype is None else flatbuffer.constant_values(model, tensor, dtype)


class _Graph:
    """Producers and readers of one subgraph's tensors."""

    def __init__(self, model, subgraph):
        self.model = model
        self.subgraph = subgraph
        self.producer = {}
        self.readers = {}
        for op in subgraph.operators:
            for t in op.outputs:
                self.producer[int(t)] = op
            for t in op.inputs:
                if t >= 0:
                    self.readers.setdefault(int(t), []).append(op)
        self.outputs = {int(t) for t in subgraph.outputs}

    def code(self, op):
        return flatbuffer.builtin_code(self.model, op)

    def made_by(self, tensor, code):
        op = self.producer.get(tensor)
        return op if op is not None and self.code(op) == code else None

    def only_read_by(self, tensor, code):
        readers = self.readers.get(tensor, [])
        return (
            tensor not in self.outputs
            and bool(readers)
            and all(self.code(op) == code for op in readers)
        )

    def scalar(self, tensor):
        """The value of a constant scalar, also behind a DEQUANTIZE (float16 target)."""
        dequantize = self.made_by(tensor, _OP.DEQUANTIZE)
        if dequantize is not None:
            tensor = int(dequantize.inputs[0])
        value = _constant(self.model, self.subgraph.tensors[tensor])
        return float(value[0]) if value is not None and value.size == 1 else None


def _mask_source(graph, condition):
    """`mask` for `mask'` (see the module docstring)."""
    both = graph.made_by(condition, _OP.LOGICAL_AND)
    if both is None:
        return condition
    for position, tensor in enumerate(int(t) for t in both.inputs):
        fill = graph.made_by(tensor, _OP.FILL)
        if fill is None:
            continue
        value = _constant(graph.model, graph.subgraph.tensors[int(fill.inputs[1])])
        if value is not None and value.size == 1 and bool(value[0]):
            return int(both.inputs[1 - position])
    return condition


def _same_shape(a, b):
    def shape(tensor):
        signature = tensor.shapeSignature
        return list(signature if signature is not None and len(signature) else tensor.shape)

    return shape(a) == shape(b)


def _new_constant(model, subgraph, name, value):
    buffer = schema.BufferT()
    buffer.data = np.asarray(value, np.float32).reshape(()).tobytes()
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name.encode()
    tensor.shape = []
    tensor.type = _FLOAT32
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _select(model, subgraph, mask, if_true, if_false, name):
    """A SELECT_V2 op writing a new float32 tensor shaped like `mask`."""
    output = flatbuffer.new_tensor(subgraph, subgraph.tensors[mask], name, _FLOAT32)
    return flatbuffer.new_op(
        flatbuffer.opcode_index(model, _OP.SELECT_V2),
        [mask, if_true, if_false],
        [output],
        schema.BuiltinOptions.SelectV2Options,
        schema.SelectV2OptionsT(),
    )


def _become(model, op, code, inputs):
    op.opcodeIndex = flatbuffer.opcode_index(model, code)
    op.inputs = inputs
    if code == _OP.ADD:
        op.builtinOptionsType = schema.BuiltinOptions.AddOptions
        op.builtinOptions = schema.AddOptionsT()
    else:
        op.builtinOptionsType = schema.BuiltinOptions.MulOptions
        op.builtinOptions = schema.MulOptionsT()


def _remove_dead(graph, candidates):
    """Removes `candidates` (and their producers) left without any reader."""
    dead = set()
    while candidates:
        op = candidates.pop()
        if id(op) in dead or graph.code(op) in _STATEFUL:
            continue
        outputs = [int(t) for t in op.outputs]
        if any(graph.readers.get(t) or t in graph.outputs for t in outputs):
            continue
        dead.add(id(op))
        for t in op.inputs:
            if t < 0:
                continue
            graph.readers[int(t)] = [r for r in graph.readers[int(t)] if r is not op]
            if int(t) in graph.producer:
                candidates.append(graph.producer[int(t)])
    return dead


def _rewrite(model, subgraph):
    """Rewrites one subgraph in place; returns the number of selects rewritten."""
    graph = _Graph(model, subgraph)
    tensors = subgraph.tensors
    made = {}  # (mask, "bias" | "keep") -> tensor
    inserted = {}  # id(op after which to insert) or None -> [ops]
    orphaned = []
    count = 0
    for op in list(subgraph.operators):
        if graph.code(op) != _OP.SELECT_V2 or len(op.inputs) != 3:
            continue
        condition, values, other = (int(t) for t in op.inputs)
        output = int(op.outputs[0])
        if tensors[values].type != _FLOAT32 or not _same_shape(tensors[values], tensors[output]):
            continue
        constant = graph.scalar(other)
        if constant is None:
            continue
        if constant <= _MASK_THRESHOLD and graph.only_read_by(output, _OP.SOFTMAX):
            kind, code, pair = "bias", _OP.ADD, (0.0, _BIAS)
        elif constant == 0.0 and graph.made_by(values, _OP.SOFTMAX) is not None:
            kind, code, pair = "keep", _OP.MUL, (1.0, 0.0)
        else:
            continue
        mask = _mask_source(graph, condition)
        if tensors[mask].type != _BOOL:
            continue
        if (mask, kind) not in made:
            if_true = _new_constant(model, subgraph, f"mask_{kind}_if_true", pair[0])
            if_false = _new_constant(model, subgraph, f"mask_{kind}_if_false", pair[1])
            select = _select(model, subgraph, mask, if_true, if_false, f"/{kind}")
            producer = graph.producer.get(mask)
            inserted.setdefault(None if producer is None else id(producer), []).append(select)
            graph.readers.setdefault(mask, []).append(select)
            made[(mask, kind)] = int(select.outputs[0])
        _become(model, op, code, [values, made[(mask, kind)]])
        for tensor in (condition, other):  # `other` may be a float16 DEQUANTIZE
            graph.readers[tensor] = [r for r in graph.readers[tensor] if r is not op]
            if tensor in graph.producer:
                orphaned.append(graph.producer[tensor])
        count += 1
    if not count:
        return 0
    dead = _remove_dead(graph, orphaned)
    operators = list(inserted.get(None, []))
    for op in subgraph.operators:
        if id(op) not in dead:
            operators.append(op)
        operators.extend(inserted.get(id(op), []))
    subgraph.operators = operators
    return count


def additive_attention_masks(tflite):
    """Rewrites masked-softmax selects of a TFLite model into ADD / MUL.

    See the module docstring for the patterns and why the results do not
    change. Models without such selects come back unchanged, and so do files
    over 2 GB whose weights sit after the flatbuffer.

    Args:
        tflite: flatbuffer bytes or a path to a `.tflite` file.

    Returns:
        `(flatbuffer bytes, number of selects rewritten)`.

    Raises:
        ValueError: `tflite` is not a TFLite flatbuffer.
    """
    content, model = flatbuffer.editable_model(tflite)
    if model is None:
        return content, 0
    count = sum(_rewrite(model, subgraph) for subgraph in model.subgraphs)
    if not count:
        return content, 0
    return flatbuffer.pack(model), count
