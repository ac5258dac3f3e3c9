"""Tensor-arena size estimate for TFLite Micro from tensor lifetimes."""

from tfcompress.export import flatbuffer

# TFLM aligns every arena buffer; 16 bytes is its default.
ALIGNMENT = 16


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


def estimate_arena_bytes(tflite):
    """Estimates the TFLite Micro tensor arena of a model's main subgraph.

    A greedy planner like TFLM's default one: tensors sorted by size
    (largest first) each take the lowest 16-byte-aligned offset that does not
    overlap a tensor alive at the same time. Dynamic dimensions count as 1
    (batch 1). It is an estimate of the activation memory only: TFLM adds
    per-op and per-tensor bookkeeping (typically a few KB) on top, and its
    planner may pack differently. Size the real arena with
    `MicroInterpreter::arena_used_bytes()`.

    Args:
        tflite: flatbuffer bytes, or a path to a `.tflite` file.

    Returns:
        `(arena_bytes, peak_live_bytes)`: the planned arena size and the largest
        sum of simultaneously live tensors (a lower bound for any planner).

    Example:

    ```python
    arena, peak = tfcompress.export.estimate_arena_bytes("model_int8.tflite")
    ```
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
    placed = []
    arena = 0
    for first, end, size in sorted(spans.values(), key=lambda s: -s[2]):
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
    return arena, peak
