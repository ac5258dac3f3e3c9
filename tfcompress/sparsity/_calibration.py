"""Block-by-block calibration statistics for one-shot pruning.

The model is cut into units processed in the order the model calls them:
the transformer blocks of a keras-hub backbone (`transformer_layers`), or,
for any other model, each Dense / EinsumDense layer on its own. For each
unit the whole calibration set is run through the model as it is at that
moment, so the unit sees the outputs of the units before it *after* they were
pruned, and the inputs of the unit's layers are reduced to what the method
needs (a Gram matrix for SparseGPT, squared norms for Wanda). When a unit is
called once per forward pass, the pass stops right after it: the later units
would not change its statistics.

Re-running the model from its inputs costs more forward work than carrying
each block's outputs to the next (quadratic in the number of blocks instead
of linear), but it needs nothing of a block's call signature (masks, caches,
position ids), so it works the same for BERT, GPT-2, Llama and plain models.
For transformer blocks that reproduce their in-model outputs from their
hidden states alone (checked on the data: true for keras-hub blocks when no
calibration token is padded), the outputs are carried instead.
"""

from keras import ops

from tfcompress.core.batches import drop_labels
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import layers_of, walk_layers
from tfcompress.sparsity._kernel_view import kernel_view


class _Stop(Exception):
    """Ends a forward pass once the unit being calibrated has run."""


def transformer_blocks(model):
    """The `transformer_layers` of the first backbone found in `model`, or []."""
    for layer in layers_of(model):
        blocks = getattr(layer, "transformer_layers", None)
        if isinstance(blocks, (list, tuple)) and blocks:
            return list(blocks)
    return []


def prunable_views(root):
    """`{id(layer): KernelView}` for every prunable layer below `root`."""
    views = {}
    for ref in walk_layers(root):
        view = kernel_view(ref.layer)
        if view is not None:
            views.setdefault(id(ref.layer), view)
    return views


def forward(model, batch):
    """Runs the model on one calibration batch (its labels dropped)."""
    inputs = drop_labels(batch, len(getattr(model, "inputs", None) or []) or None)
    return model(inputs, training=False)


def call_order(model, batches, candidates):
    """`candidates` (layers) in the order of their first call, and call counts.

    Returns:
        `(ordered, counts)`: the candidates that ran on the first batch, first
        called first, and `{id(layer): calls in that pass}`.
    """
    order, counts = [], {}

    def record(layer, inputs, outputs):
        if id(layer) not in counts:
            order.append(layer)
        counts[id(layer)] = counts.get(id(layer), 0) + 1

    with intercept_calls(candidates, record):
        forward(model, batches[0])
    return order, counts


def units(model, batches):
    """The calibration units of `model`, in call order.

    Returns:
        A list of `(unit layer, [KernelView, ...], called once)`; a unit whose
        layers never ran on the calibration data is left out.
    """
    blocks = transformer_blocks(model)
    if blocks:
        candidates = [(block, list(prunable_views(block).values())) for block in blocks]
        candidates = [(block, views) for block, views in candidates if views]
    else:
        candidates = [(view.layer, [view]) for view in prunable_views(model).values()]
    if not candidates:
        return []
    ordered, counts = call_order(model, batches, [layer for layer, _ in candidates])
    by_id = {id(layer): views for layer, views in candidates}
    return [(layer, by_id[id(layer)], counts[id(layer)] == 1) for layer in ordered]


def _accumulator(views, full_gram):
    """`(hook, totals)`: the hook adds each view's input statistic to `totals`."""
    by_id = {id(view.layer): view for view in views}
    totals = {}

    def accumulate(layer, inputs, outputs):
        view = by_id.get(id(layer))
        if view is not None:
            rows = view.input_rows(inputs)
            value = (
                ops.matmul(ops.transpose(rows), rows)
                if full_gram
                else ops.sum(ops.square(rows), axis=0)
            )
            totals[id(layer)] = totals.get(id(layer), 0.0) + value

    return accumulate, totals


def _layers_of(views):
    return list({id(v.layer): v.layer for v in views}.values())


def statistics(model, batches, unit, views, once, full_gram):
    """Accumulates each view's input statistics over all batches.

    Args:
        model: the model, pruned up to (not including) this unit.
        batches: calibration batches.
        unit: the unit layer (a block, or the layer itself).
        views: the unit's `KernelView`s.
        once: whether the unit runs once per forward pass (then the pass
            stops after it).
        full_gram: True for `X^T X` (SparseGPT), False for the per-input
            sums of squares (Wanda).

    Returns:
        `{id(layer): statistic}`, summed over every input row.
    """
    accumulate, totals = _accumulator(views, full_gram)

    def hook(layer, inputs, outputs):
        accumulate(layer, inputs, outputs)
        if layer is unit and once:
            raise _Stop

    hooked = _layers_of(views)
    if unit not in hooked:
        hooked.append(unit)
    with intercept_calls(hooked, hook):
        for batch in batches:
            try:
                forward(model, batch)
            except _Stop:
                pass
    return totals


def _close(a, b):
    if not hasattr(a, "shape") or not hasattr(b, "shape") or tuple(a.shape) != tuple(b.shape):
        return False
    scale = float(ops.max(ops.abs(b))) or 1.0
    return float(ops.max(ops.abs(a - b))) <= 1e-4 * scale


def carried_inputs(model, batches, blocks):
    """The first block's input per batch, when blocks can run on their own.

    A keras-hub block called with its hidden states alone (no padding mask)
    computes what it computes inside the model when no token is padded; then
    each block's outputs can be fed straight to the next, one block pass per
    block instead of a model pass up to it. Whether that holds is checked on
    the first batch, not assumed: each block's output must be the next
    block's input, and the first block run alone must reproduce its output.

    Returns:
        A list of input tensors (one per batch), or None to re-run the model.
    """
    seen = []

    def grab(layer, inputs, outputs):
        seen.append((layer, inputs, outputs))

    with intercept_calls(blocks, grab):
        forward(model, batches[0])
    if [layer for layer, _, _ in seen] != list(blocks):
        return None
    chained = all(_close(seen[i + 1][1], seen[i][2]) for i in range(len(seen) - 1))
    _, inputs, outputs = seen[0]
    try:
        alone = blocks[0](inputs, training=False)
    except Exception:  # a block that needs more than its hidden states
        return None
    if not chained or not _close(alone, outputs):
        return None
    carried = [inputs]

    def first(layer, inputs, outputs):
        carried.append(inputs)
        raise _Stop

    with intercept_calls([blocks[0]], first):
        for batch in batches[1:]:
            try:
                forward(model, batch)
            except _Stop:
                pass
    return carried if len(carried) == len(batches) else None


def block_statistics(block, inputs, views, full_gram):
    """`statistics` from the block's own inputs, one block call per batch."""
    accumulate, totals = _accumulator(views, full_gram)
    with intercept_calls(_layers_of(views), accumulate):
        for x in inputs:
            block(x, training=False)
    return totals


def block_outputs(block, inputs):
    """The (pruned) block's outputs, the next block's inputs."""
    return [block(x, training=False) for x in inputs]
