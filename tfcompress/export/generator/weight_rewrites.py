"""Flatbuffer rewrites after conversion: one copy of the tied embedding, weight-only int8.

Each edits an unpacked `schema.ModelT` in place, so an export unpacks and
packs the converted file once however many rewrites it applies.
"""

import numpy as np

from tfcompress.export import flatbuffer
from tfcompress.export.flatbuffer import schema


def _constant_tensors(model):
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if flatbuffer.has_data(model, tensor):
                yield tensor


def _same_quantization(a, b):
    qa, qb = a.quantization, b.quantization
    if qa is None or qa.scale is None or qb is None or qb.scale is None:
        return (qa is None or qa.scale is None) and (qb is None or qb.scale is None)
    return (
        np.array_equal(np.asarray(qa.scale), np.asarray(qb.scale))
        and np.array_equal(np.asarray(qa.zeroPoint), np.asarray(qb.zeroPoint))
        and qa.quantizedDimension == qb.quantizedDimension
    )


def share_identical_buffers(model):
    """Points tensors with byte-identical constants (and equal quantization) at one buffer.

    Returns the number of bytes freed. The converter writes a weight used by
    two signatures, or by a GATHER and a FULLY_CONNECTED, as separate buffers
    when it folds it separately for each use.
    """
    first = {}
    freed = 0
    for tensor in _constant_tensors(model):
        data = model.buffers[tensor.buffer].data
        key = (tensor.type, tuple(tensor.shape), bytes(np.asarray(data, np.uint8).tobytes()))
        if key not in first:
            first[key] = tensor
            continue
        keeper = first[key]
        if keeper.buffer == tensor.buffer or not _same_quantization(keeper, tensor):
            continue
        old = tensor.buffer
        tensor.buffer = keeper.buffer
        if not any(t.buffer == old for sg in model.subgraphs for t in sg.tensors):
            freed += len(model.buffers[old].data)
            model.buffers[old].data = None
    return freed


def _int8_lookup_pairs(model):
    """(gather int8 table tensor, gather scale tensor) of each int8 embedding lookup."""
    pairs = []
    for subgraph in model.subgraphs:
        gathers = [op for op in subgraph.operators if flatbuffer.op_name(model, op) == "GATHER"]
        tables = [subgraph.tensors[op.inputs[0]] for op in gathers]
        int8 = [
            t
            for t in tables
            if flatbuffer.has_data(model, t)
            and flatbuffer.type_name(t) == "INT8"
            and (t.quantization is None or t.quantization.scale is None)
        ]
        for table in int8:
            rows = table.shape[0]
            scales = [
                t
                for t in tables
                if flatbuffer.has_data(model, t)
                and flatbuffer.type_name(t) == "FLOAT32"
                and list(t.shape) == [rows, 1]
            ]
            if len(scales) == 1:
                pairs.append((table, scales[0]))
    return pairs


def _lm_heads(model, rows, columns):
    """Per-channel int8 FULLY_CONNECTED weights shaped [rows, columns]."""
    heads = []
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            if flatbuffer.op_name(model, op) != "FULLY_CONNECTED":
                continue
            weight = subgraph.tensors[op.inputs[1]]
            q = weight.quantization
            if (
                flatbuffer.has_data(model, weight)
                and flatbuffer.type_name(weight) == "INT8"
                and list(weight.shape) == [rows, columns]
                and q is not None
                and q.scale is not None
                and len(q.scale) == rows
                and not np.any(np.asarray(q.zeroPoint))
            ):
                heads.append(weight)
    return heads


def _dequantized(model, tensor):
    """A per-tensor int8 constant's float values, or None for other tensors."""
    q = tensor.quantization
    if (
        flatbuffer.type_name(tensor) != "INT8"
        or q is None
        or q.scale is None
        or len(q.scale) != 1
        or not flatbuffer.has_data(model, tensor)
    ):
        return None
    values = flatbuffer.constant_values(model, tensor, np.int8).astype(np.float32)
    zero = 0 if q.zeroPoint is None or not len(q.zeroPoint) else int(q.zeroPoint[0])
    return (values - zero) * float(q.scale[0]), float(q.scale[0])


def _original_of(values, step, tables):
    for table in tables:
        if table.size == values.size and np.abs(table.reshape(-1) - values).max() <= step:
            return table
    return None


def restore_float_lookups(model, tables):
    """Gives GATHER back the float `tables` the converter stored as per-tensor int8.

    Dynamic-range conversion quantizes every constant of 1024+ values, so the
    rotary cos/sin tables, learned positions and the embedding's per-row
    scales come out as one-scale int8 followed by a DEQUANTIZE: a lossy copy
    (a row scale 10x below the largest keeps 1-2 significant bits), and an
    int8 row-scale table is one the embedding rewrite cannot share with the
    LM head. Each such GATHER reads the matching float table instead, and its
    DEQUANTIZE is dropped.

    Args:
        model: the converted `schema.ModelT`, edited in place.
        tables: the float arrays the graph gathers from.
    """
    tables = [np.asarray(t, np.float32) for t in tables]
    restored = {}
    for subgraph in model.subgraphs:
        readers = {}
        for op in subgraph.operators:
            for i in op.inputs:
                readers.setdefault(i, []).append(op)
        dropped = set()
        for op in subgraph.operators:
            if flatbuffer.op_name(model, op) != "GATHER":
                continue
            params = subgraph.tensors[op.inputs[0]]
            after = readers.get(op.outputs[0], [])
            if len(after) != 1 or flatbuffer.op_name(model, after[0]) != "DEQUANTIZE":
                continue
            if params.buffer not in restored:
                found = _dequantized(model, params)
                original = None if found is None else _original_of(*found, tables)
                if original is None:
                    continue
                restored[params.buffer] = original
            params.type = schema.TensorType.FLOAT32
            params.quantization = None
            op.outputs = list(after[0].outputs)
            dropped.add(id(after[0]))
        subgraph.operators = [op for op in subgraph.operators if id(op) not in dropped]
    for buffer, original in restored.items():
        model.buffers[buffer].data = original.astype("<f4").reshape(-1).view(np.uint8)
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            if tensor.buffer in restored:
                tensor.type = schema.TensorType.FLOAT32
                tensor.quantization = None


def store_embedding_once(model):
    """Edits a converted generator (`schema.ModelT`) so its tied embedding is stored once.

    Float tables: byte-identical copies share a buffer. Int8 targets: the
    lookup's int8 table is replaced by the LM head's per-channel int8 weights
    and its row scales by the head's scales, so both read one table.
    """
    for table, scales in _int8_lookup_pairs(model):
        heads = _lm_heads(model, table.shape[0], table.shape[1])
        if not heads:
            continue
        head = heads[0]
        old = table.buffer
        table.buffer = head.buffer
        model.buffers[scales.buffer].data = (
            np.asarray(head.quantization.scale, np.float32).astype("<f4").view(np.uint8)
        )
        if not any(t.buffer == old for sg in model.subgraphs for t in sg.tensors):
            model.buffers[old].data = None
    share_identical_buffers(model)


def _per_channel_values(model, weight):
    """The float [out, in] values of a per-output-channel int8 weight."""
    scale = np.asarray(weight.quantization.scale, np.float32).reshape(-1, 1)
    values = flatbuffer.constant_values(model, weight, np.int8).astype(np.float32)
    return values.reshape(int(weight.shape[0]), -1) * scale


def _matching(model, weight, kernels):
    """The kernel [in, out] of `kernels` that per-channel int8 `weight` quantizes, or None."""
    q = weight.quantization
    if q is None or q.scale is None:
        return None
    # Shapes first: dequantizing every int8 weight (the LM head included) to
    # compare it with the few small split kernels would be most of the work.
    if not any(tuple(kernel.T.shape) == tuple(weight.shape) for kernel in kernels):
        return None
    scale = np.asarray(q.scale, np.float32).reshape(-1, 1)
    values = _per_channel_values(model, weight)
    for kernel in kernels:
        if kernel.T.shape == values.shape and np.all(
            np.abs(kernel.T - values) <= scale * 0.5 + 1e-7
        ):
            return kernel
    return None


def dequantize_weights_once(model, only=None, float16=False):
    """Turns hybrid int8 FULLY_CONNECTED ops into float ones reading stored weights.

    Each weight gets a DEQUANTIZE in front of its FULLY_CONNECTED: the file
    keeps int8 (or float16) weights, and since the input is constant the
    interpreter dequantizes it once when the signature is prepared, so
    activations are never quantized (int8 weights with float activations).

    Args:
        model: the `schema.ModelT`, edited in place.
        only: float kernels [in, out]: rewrite just the ops whose int8 weight
            is one of them quantized, or None for every hybrid op.
        float16: with `only`, store the matched float kernels themselves as
            float16 instead. For small kernels (mixed_int8's outlier paths,
            k <= 8 input channels) this is smaller as well as closer: an int8
            tensor carries a float32 scale and an int64 zero point per output
            channel, once per signature, which outweighs its k values.
    """
    dequantize = flatbuffer.opcode_index(model, schema.BuiltinOperator.DEQUANTIZE)
    halves = {}
    for subgraph in model.subgraphs:
        operators = []
        for op in subgraph.operators:
            if flatbuffer.op_name(model, op) == "FULLY_CONNECTED":
                weight = subgraph.tensors[op.inputs[1]]
                data = subgraph.tensors[op.inputs[0]]
                hybrid = (
                    flatbuffer.has_data(model, weight)
                    and flatbuffer.type_name(weight) == "INT8"
                    and flatbuffer.type_name(data) == "FLOAT32"
                )
                kernel = None if only is None or not hybrid else _matching(model, weight, only)
                if hybrid and (only is None or kernel is not None):
                    stored = op.inputs[1]
                    if float16:
                        stored = _float16_copy(model, subgraph, weight, kernel, halves)
                    floats = flatbuffer.new_tensor(
                        subgraph, weight, "_dequantized", schema.TensorType.FLOAT32
                    )
                    subgraph.tensors[floats].quantization = None
                    operators.append(flatbuffer.new_op(dequantize, [stored], [floats]))
                    op.inputs = list(op.inputs)
                    op.inputs[1] = floats
                    if op.builtinOptions is not None:
                        op.builtinOptions.asymmetricQuantizeInputs = False
            operators.append(op)
        subgraph.operators = operators
    # The int8 tensors the float16 copies replaced: no op reads them, so
    # their values and per-channel parameters go.
    read = {(id(sg), i) for sg in model.subgraphs for op in sg.operators for i in op.inputs}
    for subgraph in model.subgraphs:
        for i, tensor in enumerate(subgraph.tensors):
            if tensor.buffer in halves and (id(subgraph), i) not in read:
                tensor.buffer, tensor.quantization = 0, None
    kept = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    for buffer in halves:
        if buffer not in kept:
            model.buffers[buffer].data = None


def _float16_copy(model, subgraph, weight, kernel, halves):
    """A float16 tensor of `kernel` [in, out] (which int8 `weight` quantizes) in `subgraph`.

    One buffer per int8 buffer, shared by the signatures.
    """
    if weight.buffer not in halves:
        stored = schema.BufferT()
        stored.data = np.ascontiguousarray(kernel.T).astype("<f2").reshape(-1).view(np.uint8)
        model.buffers.append(stored)
        halves[weight.buffer] = len(model.buffers) - 1
    index = flatbuffer.new_tensor(subgraph, weight, "_float16", schema.TensorType.FLOAT16)
    subgraph.tensors[index].buffer = halves[weight.buffer]
    subgraph.tensors[index].quantization = None
    return index
