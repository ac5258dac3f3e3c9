"""Tensor-arena size estimate for TFLite Micro: planned activations plus its
persistent structures.

The persistent sizes are those TFLM's recording allocator reports on its
64-bit host build (PyPI `tflite-micro`), rounded up; on a 32-bit board the
pointer-holding structures are smaller, so the estimate errs high there.
Measured on Dense, Conv2D, DepthwiseConv2D, Conv1D, pooling, MEAN, SOFTMAX,
ADD, CONCATENATION and Flatten models, and on the `tfcompress demo` CNN.
"""

from tfcompress.export import flatbuffer

# TFLM aligns every arena buffer; 16 bytes is its default.
ALIGNMENT = 16
# Bytes per tensor of the model (TfLiteEvalTensor), per op
# (NodeAndRegistration), per model input or output (a persistent TfLiteTensor
# plus its quantization parameters), and fixed (the allocator objects).
EVAL_TENSOR_BYTES = 24
NODE_BYTES = 64
IO_TENSOR_BYTES = 64 + 32
# The allocator objects, subgraph tables and, per op, its builtin options
# struct, which the recording allocator does not itemize.
FIXED_BYTES = 512
OPTIONS_BYTES = 32
# Kernel data each op keeps for the model's lifetime ("Persistent buffer data"
# in TFLM's report): `(bytes, bytes per output channel)`. The per-channel part
# is the requantization multipliers and shifts of per-channel int8 weights.
KERNEL_BYTES = {
    "CONV_2D": (128, 8),
    "DEPTHWISE_CONV_2D": (128, 8),
    "TRANSPOSE_CONV": (128, 8),
    "FULLY_CONNECTED": (112, 8),
    "MAX_POOL_2D": (64, 0),
    "AVERAGE_POOL_2D": (64, 0),
    "MEAN": (80, 0),
    "SUM": (80, 0),
    "REDUCE_MAX": (80, 0),
    "SOFTMAX": (128, 0),
    "ADD": (96, 0),
    "SUB": (96, 0),
    "MUL": (64, 0),
    "CONCATENATION": (64, 0),
    "STRIDED_SLICE": (96, 0),
    "SHAPE": (0, 0),
    "PACK": (0, 0),
    "RESHAPE": (0, 0),
    "EXPAND_DIMS": (0, 0),
    "SQUEEZE": (0, 0),
}
DEFAULT_KERNEL_BYTES = (128, 0)
# While it loads a model, TFLM needs temporary memory next to the persistent
# part, before the activations are laid out: each kernel's Prepare allocates
# temporary tensors (`(bytes, bytes per output channel)` per op), and the
# memory planner then takes `PLANNER_BYTES` per tensor. For models with small
# activations this, not the final layout, sets the smallest arena.
PREPARE_BYTES = {
    "CONV_2D": (640, 12),
    "DEPTHWISE_CONV_2D": (640, 12),
    "TRANSPOSE_CONV": (640, 12),
    "FULLY_CONNECTED": (240, 4),
    "MEAN": (480, 0),
    "SUM": (480, 0),
    "REDUCE_MAX": (480, 0),
    "SOFTMAX": (160, 0),
}
DEFAULT_PREPARE_BYTES = (320, 4)
PLANNER_BYTES = 56
# Reductions of int8 data ask for scratch while they run: the int32 sums and
# two index buffers of the input's rank.
_REDUCTIONS = ("MEAN", "SUM", "REDUCE_MAX")


def _align(size):
    return -(-size // ALIGNMENT) * ALIGNMENT


def tensor_lifetimes(model, subgraph_index=0):
    """`{tensor index: (first op, last op, bytes)}` for non-constant tensors.

    Inputs live from op 0, outputs until the last op; every other tensor from
    the op writing it to the last op reading it. Constants (weights) stay in
    flash and are left out.
    """
    subgraph = model.subgraphs[subgraph_index]
    last = max(len(subgraph.operators) - 1, 0)
    spans = {}

    def touch(index, step):
        if index < 0:
            return
        tensor = subgraph.tensors[index]
        if flatbuffer.has_data(model, tensor) or tensor.isVariable:
            return
        first, end = spans.get(index, (step, step))[:2]
        spans[index] = (min(first, step), max(end, step))

    for index in subgraph.inputs if subgraph.inputs is not None else []:
        touch(int(index), 0)
    for step, op in enumerate(subgraph.operators):
        for index in list(op.inputs) + list(op.outputs) + list(op.intermediates or []):
            touch(int(index), step)
    for index in subgraph.outputs if subgraph.outputs is not None else []:
        touch(int(index), last)
    return {
        index: (first, end, flatbuffer.tensor_bytes(subgraph.tensors[index]))
        for index, (first, end) in spans.items()
    }


def _scratch_buffers(model, subgraph_index=0):
    """`[(op, op, bytes)]` for the scratch buffers TFLM's kernels request."""
    subgraph = model.subgraphs[subgraph_index]
    buffers = []
    for step, op in enumerate(subgraph.operators):
        if flatbuffer.op_name(model, op) not in _REDUCTIONS:
            continue
        shape = subgraph.tensors[op.inputs[0]].shape
        rank = 0 if shape is None else len(shape)
        elements = flatbuffer.tensor_bytes(subgraph.tensors[op.outputs[0]])
        buffers += [(step, step, 4 * elements), (step, step, 4 * rank), (step, step, 4 * rank)]
    return buffers


def _plan(spans):
    """Greedy first fit by decreasing size, as TFLM's GreedyMemoryPlanner."""
    placed = []
    arena = 0
    for first, end, size in sorted(spans, key=lambda s: -s[2]):
        size = _align(size)
        offset = 0
        for other_offset, other_size in sorted(
            (o, s) for o, s, f, e in placed if f <= end and first <= e
        ):
            if offset + size <= other_offset:
                break
            offset = max(offset, other_offset + other_size)
        placed.append((offset, size, first, end))
        arena = max(arena, offset + size)
    return arena


def _channels(subgraph, op):
    shape = subgraph.tensors[op.outputs[0]].shape if len(op.outputs) else None
    return max(int(shape[-1]), 1) if shape is not None and len(shape) else 1


def temporary_bytes(model, subgraph_index=0):
    """Estimated temporary bytes TFLM needs beside the persistent part while loading."""
    subgraph = model.subgraphs[subgraph_index]
    prepare = 0
    for op in subgraph.operators:
        fixed, per_channel = PREPARE_BYTES.get(flatbuffer.op_name(model, op), DEFAULT_PREPARE_BYTES)
        prepare = max(prepare, fixed + per_channel * _channels(subgraph, op))
    return max(prepare, PLANNER_BYTES * len(subgraph.tensors))


def persistent_bytes(model, subgraph_index=0):
    """Estimated bytes TFLM keeps for the model's lifetime (the arena's tail)."""
    subgraph = model.subgraphs[subgraph_index]
    io = len(subgraph.inputs if subgraph.inputs is not None else []) + len(
        subgraph.outputs if subgraph.outputs is not None else []
    )
    total = FIXED_BYTES + EVAL_TENSOR_BYTES * len(subgraph.tensors) + IO_TENSOR_BYTES * io
    for op in subgraph.operators:
        fixed, per_channel = KERNEL_BYTES.get(flatbuffer.op_name(model, op), DEFAULT_KERNEL_BYTES)
        total += NODE_BYTES + OPTIONS_BYTES + _align(fixed + per_channel * _channels(subgraph, op))
    return total


def estimate_arena_parts(tflite):
    """`(activations, temporary, persistent, peak live)` bytes of the main subgraph.

    The planned activations and the temporary memory TFLM needs while loading
    (`temporary_bytes`) share the same space: `estimate_arena_bytes` is
    `max(activations, temporary) + persistent`.
    """
    model = flatbuffer.read_model(flatbuffer.read_bytes(tflite))
    spans = tensor_lifetimes(model)
    steps = max((end for _, end, _ in spans.values()), default=-1) + 1
    peak = max(
        (
            sum(size for first, end, size in spans.values() if first <= t <= end)
            for t in range(steps)
        ),
        default=0,
    )
    activations = _plan(list(spans.values()) + _scratch_buffers(model))
    return activations, temporary_bytes(model), persistent_bytes(model), peak


def estimate_arena_bytes(tflite):
    """Estimates the TFLite Micro tensor arena of a model's main subgraph.

    Two parts, as TFLM lays out its arena. The activations (the arena's head):
    a greedy planner like TFLM's default one, tensors and the scratch buffers
    of reductions sorted by size (largest first), each at the lowest
    16-byte-aligned offset that does not overlap a buffer alive at the same
    time; dynamic dimensions count as 1 (batch 1). The persistent part (the
    tail): per tensor, per op, per input/output and per-kernel data (see
    `KERNEL_BYTES`), sized from TFLM's own allocation report on its 64-bit
    host build. While it loads the model TFLM also needs temporary memory
    beside the tail (`PREPARE_BYTES`, `PLANNER_BYTES`) in the space the
    activations later take: for small models that, not the activations, sets
    the arena (TFLM's recorded total can then be too small to load in). It is an estimate: TFLM's reference kernels are assumed
    (optimized kernels such as CMSIS-NN request extra scratch), and
    `tfcompress.export.check_in_tflm` (with `pip install tfcompress[micro]`)
    measures the real figure.

    Args:
        tflite: flatbuffer bytes, or a path to a `.tflite` file.

    Returns:
        `(arena_bytes, peak_live_bytes)`: the estimated arena size
        (activations plus persistent part) and the largest sum of
        simultaneously live tensors (a lower bound for any planner's
        activation memory).

    Example:

    ```python
    arena, peak = tfcompress.export.estimate_arena_bytes("model_int8.tflite")
    ```
    """
    activations, temporary, persistent, peak = estimate_arena_parts(tflite)
    return max(activations, temporary) + persistent, peak
