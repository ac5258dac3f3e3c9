"""Refit the layers that read pruned units, so a pruned block computes what it did.

After structured pruning, the layer that reads the removed units (the
attention output projection over the kept heads, the FFN output projection
over the kept channels) still holds weights fitted for all of them. Here each
reader is refitted by ridge least squares on calibration data (Kwon et al.
2022, "A Fast Post-Training Pruning Framework for Transformers", solve the
layer-wise reconstruction in closed form; FLAP's bias compensation is the
bias-only case), one reader at a time in call order, so every reader sees the
outputs of the pruned and already refitted layers before it. Those inputs
come from the transformer block alone, fed the carried outputs of the
refitted blocks before it, when the blocks allow it (no padded token), else
from a model pass stopped at the reader.

The target is the original model's output of the same reader on the same
batch. Inside a keras-hub block it is corrected for the residual stream: the
reader's output is added to a residual (the block input for attention, the
attention sum for the FFN), and the pruned model's residual has drifted from
the original's, so the reader is asked for `original output + original
residual - pruned residual`, which makes the residual sum match, not only the
branch.
"""

import functools

import numpy as np

from tfcompress.core._keras_internals import (
    KerasInternalsError,
    attention_projections,
    block_sublayers,
    cross_attention_sublayers,
)
from tfcompress.core.batches import padding_mask
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import find_layer, walk_layers
from tfcompress.sparsity import _calibration
from tfcompress.sparsity._calibration import _Stop
from tfcompress.sparsity._kernel_view import kernel_view

MODES = ("bias", "least_squares")


def _residual_source(block, attention, kind):
    """The layer whose input is the residual the head or FFN branch of a keras-hub block adds to."""
    try:
        sublayers = block_sublayers(block)
    except KerasInternalsError:
        return None
    # Pre-norm blocks add the branch to the norm's input; post-norm blocks to
    # the branch's own input (the block input, or the previous norm's output).
    pre_norm = getattr(block, "normalize_first", True)
    if kind != "heads":
        return sublayers.ffn_norm if pre_norm else sublayers.up
    norm = sublayers.attention_norm
    if attention is not sublayers.attention:
        cross = cross_attention_sublayers(block)
        if cross is None or cross[0] is not attention:
            return None
        norm = cross[1]
    return norm if pre_norm else attention_projections(attention).query


def _layer_at(model, path):
    return model if path == "" else find_layer(model, path).layer


def _reader(model, group):
    """`(reader layer, residual source layer or None)` of a rebuilt group, found by path."""
    if group.kind != "heads":
        block = _layer_at(model, group.path)
        return block_sublayers(block).down, _residual_source(block, None, group.kind)
    attention = _layer_at(model, group.layer_path)
    block = _layer_at(model, group.layer_path.rpartition("/")[0])
    return attention_projections(attention).output, _residual_source(block, attention, "heads")


def check_readers(model, groups, mode):
    """Raises, before any work, when a group's reader cannot be refitted with `mode`.

    Raises:
        ValueError: for "bias" on a reader without a bias (Llama's
            projections), or a reader whose kernel has no matrix view.
    """
    for group in groups:
        reader, _ = _reader(model, group)
        if kernel_view(reader) is None:
            raise ValueError(
                f"reconstruct={mode!r}: {reader.path!r} ({type(reader).__name__}) has no "
                "float Dense/EinsumDense kernel to refit. Pass reconstruct=None."
            )
        if mode == "bias" and getattr(reader, "bias", None) is None:
            raise ValueError(
                f"reconstruct='bias' refits the bias of {reader.path!r}, which has none "
                "(use_bias=False). Pass reconstruct='least_squares', which refits its kernel."
            )


def _row_weights(batch, rows):
    """Per input row, 1 for a real token and 0 for padding (keras-hub `padding_mask`)."""
    mask = padding_mask(batch)
    if mask is None or np.size(mask) == 0 or rows % np.size(mask):
        return np.ones(rows)
    return np.repeat(np.asarray(mask, "float64").reshape(-1), rows // np.size(mask))


def _rows(x):
    return np.asarray(x, "float32").reshape(-1, x.shape[-1])


def _targets(original, batches, sources):
    """Per batch, `{id(reader): original output + original residual}`, from one full pass.

    The original model does not change, so every reader's target comes from
    the same pass.
    """
    residuals = {id(r): id(s) for s, r in sources if r is not None}
    readers = {id(s) for s, _ in sources}
    found = []
    for batch in batches:
        seen = {}

        def hook(layer, inputs, outputs, _seen=seen):
            if id(layer) in readers:
                _seen[("out", id(layer))] = _rows(outputs)
            if id(layer) in residuals:
                _seen[("res", residuals[id(layer)])] = _rows(inputs)

        with intercept_calls([layer for pair in sources for layer in pair if layer], hook):
            _calibration.forward(original, batch)
        found.append(
            {
                id(s): seen[("out", id(s))] + seen.get(("res", id(s)), 0.0)
                for s, _ in sources
                if ("out", id(s)) in seen
            }
        )
    return found


def _capture(run, reader, residual):
    """The reader's input rows and the residual rows, from `run()` stopped at the reader."""
    seen = {}

    def hook(layer, inputs, outputs):
        if layer is residual:
            seen["residual"] = _rows(inputs)
        if layer is reader:
            seen["inputs"] = np.asarray(kernel_view(reader).input_rows(inputs), "float64")
            raise _Stop

    hooked = [reader] + ([residual] if residual is not None else [])
    with intercept_calls(hooked, hook):
        try:
            run()
        except _Stop:
            pass
    if "inputs" not in seen:
        raise ValueError(
            f"Reconstruction: layer {reader.path!r} never ran on `representative_data`; "
            "pass batches that reach every pruned block, or reconstruct=None."
        )
    return seen


def _refit(reader, design, goal, mode, ridge):
    """Solves for the reader's kernel and bias (or the bias alone) and assigns them.

    `design` holds the sums the fit needs: for "bias", `(sum of input rows
    with a trailing 1, sum of target rows)`; else `(A^T A, A^T T)` of the
    input rows `A` with a column of ones and the targets `T`.
    """
    view = kernel_view(reader)
    kernel = np.asarray(view.to_matrix(reader.kernel), "float64")
    bias = getattr(reader, "bias", None)
    if mode == "bias":
        # Least squares over the bias alone: the mean residual of the fit.
        count = design[-1]
        bias.assign(((goal - design[:-1] @ kernel) / count).astype("float32"))
        return
    size = design.shape[0] - (0 if bias is not None else 1)
    gram, cross = design[:size, :size], goal[:size]
    current = (
        kernel if bias is None else np.concatenate([kernel, np.asarray(bias, "float64")[None]])
    )
    # Ridge towards the current weights: with few calibration tokens a
    # direction they do not excite keeps its pretrained value.
    scale = ridge * np.mean(np.diag(gram)[: kernel.shape[0]])
    solved = np.linalg.solve(gram + scale * np.eye(size), cross + scale * current)
    reader.kernel.assign(np.asarray(view.from_matrix(solved[: kernel.shape[0]].astype("float32"))))
    if bias is not None:
        bias.assign(solved[-1].astype("float32"))


def _carried(pruned, batches, readers):
    """`(blocks, block index per reader, first block's inputs)` to carry, or None.

    Carrying each block's outputs to the next makes the cost linear in depth
    (one block pass per reader instead of a model pass up to it). It needs
    every reader inside a transformer block, and blocks that compute alone
    what they compute in the model: `_calibration.carried_inputs` checks
    that, and padded tokens (which only the model's own call masks) rule it
    out on every batch.
    """
    blocks = _calibration.transformer_blocks(pruned)
    if not blocks or any(
        mask is not None and not np.all(np.asarray(mask)) for mask in map(padding_mask, batches)
    ):
        return None
    owner = {}
    for index, block in enumerate(blocks):
        owner.update({id(ref.layer): index for ref in walk_layers(block)})
    if any(id(reader) not in owner for reader in readers):
        return None
    inputs = _calibration.carried_inputs(pruned, batches, blocks)
    return None if inputs is None else (blocks, owner, inputs)


def reconstruct_readers(
    original, pruned, groups, batches, mode="least_squares", ridge=1e-2, progress=None
):
    """Refits the layer reading each pruned group's units, in call order.

    Args:
        original: the model before pruning (unchanged).
        pruned: the pruned model (its readers are changed in place).
        groups: the pruned `Group`s of kind "heads" or "ffn".
        batches: a list of calibration batches.
        mode: "least_squares" (kernel and bias) or "bias" (bias only).
        ridge: ridge strength, a fraction of the mean diagonal of the reader's
            input Gram matrix.
        progress: optional `progress(readers_done)` callback.
    """
    pairs = [(_reader(original, g), _reader(pruned, g)) for g in groups]
    order, _ = _calibration.call_order(pruned, batches, [p[0] for _, p in pairs])
    rank = {id(layer): i for i, layer in enumerate(order)}
    pairs.sort(key=lambda pair: rank.get(id(pair[1][0]), len(rank)))
    targets = _targets(original, batches, [source for source, _ in pairs])
    carry = _carried(pruned, batches, [reader for _, (reader, _) in pairs])
    fed = 0  # the block whose inputs `carry` holds
    for done, ((source, _), (reader, residual)) in enumerate(pairs, 1):
        if carry is not None:
            blocks, owner, inputs = carry
            while fed < owner[id(reader)]:
                inputs = _calibration.block_outputs(blocks[fed], inputs)
                fed += 1
            carry = blocks, owner, inputs
            runs = [functools.partial(blocks[fed], x, training=False) for x in inputs]
        else:
            runs = [functools.partial(_calibration.forward, pruned, b) for b in batches]
        design = goal = 0.0
        for batch, target, run in zip(batches, targets, runs):
            seen = _capture(run, reader, residual)
            wanted = target[id(source)].astype("float64")
            if residual is not None:
                wanted = wanted - seen["residual"]
            real = _row_weights(batch, wanted.shape[0]) > 0
            rows = np.concatenate([seen["inputs"][real], np.ones((int(real.sum()), 1))], axis=1)
            if mode == "bias":
                design, goal = design + rows.sum(0), goal + wanted[real].sum(0)
            else:
                design, goal = design + rows.T @ rows, goal + rows.T @ wanted[real]
        _refit(reader, design, goal, mode, ridge)
        if progress is not None:
            progress(done)
