"""SparseGPT (Frantar & Alistarh, 2023) for one `(inputs, outputs)` matrix.

Optimal Brain Surgeon with the layer's Hessian `H = X^T X` (X the layer's
calibration inputs), processed over inputs in blocks. Within a block the
mask is chosen by the OBS saliency `w^2 / [H^-1]_jj^2`, computed on the
weights as already updated by the previous inputs; pruning input `j` then
moves the error `(w - q) / [H^-1]_jj` onto the inputs after it through the
row `j` of the upper Cholesky factor of `H^-1`. That factor is upper
triangular, so subtracting the whole outer product leaves earlier inputs
unchanged and turns column `j` into its pruned value.

Unstructured masks keep the same count for every output, as Wanda's do.
The paper's adaptive selection (one saliency threshold over a whole block
of inputs and all outputs) was measured in `benchmarks/one_shot_gpt.py` at
50% and gave no consistent gain: perplexity 3.607 against 3.621 on the
842k byte GPT, 3.218 against 3.216 on the 3.26M one, and 33.31 against
32.65 on SmolLM2-135M (4,096 calibration tokens).

The paper's lazy batch update: inside a block each input's error moves onto
the block's later inputs only; the inputs after the block receive all of
the block's errors at once, in one matmul. The loop runs in float64 numpy,
where one step over a `(128, outputs)` block costs microseconds (eager
`keras.ops` cost about ten times more per step, and there are as many steps
as inputs).
"""

import numpy as np
from keras import ops

from tfcompress.sparsity._wanda import pruned_per_output


def inverse_hessian_factor(gram, damping):
    """Upper Cholesky factor `U` of the damped `H^-1` (`H^-1 = U^T U`), float64.

    Inputs that were never non-zero (a dead ReLU unit) have a zero diagonal;
    they get 1 there, so their weights are ranked by magnitude alone. With
    `J` the reversal permutation and `J H J = L L^T`, `U = J L^-1 J`: one
    Cholesky factorization and one triangular solve, half the time of
    inverting `H` and factoring the inverse.
    """
    hessian = ops.cast(gram, "float64")
    diagonal = ops.diagonal(hessian)
    dead = ops.cast(ops.equal(diagonal, 0.0), "float64")
    hessian = hessian + ops.diag(dead)
    diagonal = ops.diagonal(hessian)
    size = hessian.shape[0]
    hessian = hessian + damping * ops.mean(diagonal) * ops.eye(size, dtype="float64")
    lower = ops.linalg.cholesky(ops.flip(hessian, (0, 1)))
    inverse = ops.linalg.solve_triangular(lower, ops.eye(size, dtype="float64"), lower=True)
    return ops.flip(inverse, (0, 1))


def block_counts(num_inputs, block_size, sparsity):
    """Pruned weights per output in each block; they add up to the total."""
    edges = list(range(0, num_inputs, block_size)) + [num_inputs]
    total = pruned_per_output(num_inputs, sparsity)
    cumulative = [min(int(round(sparsity * e)), total) for e in edges]
    cumulative[-1] = total
    return [b - a for a, b in zip(cumulative, cumulative[1:])]


def keep_largest(scores, count):
    """Bool mask of `scores`' shape with the `count` smallest of each column False.

    Ties go to the lower index (the later input is pruned first), as in
    `_wanda.keep_largest_per_output`, so every column loses exactly `count`.
    """
    order = np.argsort(-scores, axis=0, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[0])[:, None], axis=0)
    return ranks < scores.shape[0] - count


def _eliminate(block, mask, factor, errors, start, stop, choose):
    """Prunes inputs `[start, stop)` of a block, each error moving onto the later ones.

    Inputs are taken in sub-blocks of `_SUB_BLOCK` with the same lazy
    update one level down: a step touches its sub-block's rows only, and the
    rest of the block receives the sub-block's errors in one matmul, so each
    step's outer product is 16 rows instead of up to the whole block.
    """
    diagonal = np.diagonal(factor)[:, None]
    for first in range(start, stop, _SUB_BLOCK):
        last = min(first + _SUB_BLOCK, stop)
        for j in range(first, last):
            choose(j)
            errors[j] = np.where(mask[j], 0.0, block[j]) / diagonal[j]
            block[j:last] -= np.outer(factor[j, j:last], errors[j])
        if last < stop:
            block[last:stop] -= np.einsum(
                "ki,ko->io", factor[first:last, last:stop], errors[first:last]
            )


_SUB_BLOCK = 16


def obs_prune(weights, factor, counts=None, m_by_n=None, block_size=128):
    """SparseGPT's pruning loop on float64 arrays; returns the pruned matrix.

    Args:
        weights: `(inputs, outputs)` float64 weights (not modified).
        factor: the upper Cholesky factor of the damped `H^-1` (float64).
        counts: weights pruned per output in each block (`block_counts`),
            for unstructured sparsity.
        m_by_n: `(m, n)` instead of `counts`: m zeros in every n inputs,
            chosen when the loop reaches the group.
        block_size: inputs per block (a multiple of n for N:M).

    Returns:
        The `(inputs, outputs)` float64 matrix, exact zeros where pruned.
    """
    weights = np.array(weights, dtype=np.float64)
    keep = np.ones(weights.shape, dtype=bool)
    num_inputs = weights.shape[0]
    for index, first in enumerate(range(0, num_inputs, block_size)):
        last = min(first + block_size, num_inputs)
        block, mask = weights[first:last], keep[first:last]
        block_factor = factor[first:last, first:last]
        diagonal = np.diagonal(block_factor)[:, None]
        if counts is not None:
            mask[:] = keep_largest(np.square(block / diagonal), counts[index])

        def choose(j):
            if m_by_n is not None and j % m_by_n[1] == 0:
                group = slice(j, j + m_by_n[1])
                mask[group] = keep_largest(np.square(block[group] / diagonal[group]), m_by_n[0])

        errors = np.zeros_like(block)
        _eliminate(block, mask, block_factor, errors, 0, last - first, choose)
        if last < num_inputs:
            weights[last:] -= factor[first:last, last:].T @ errors
    return np.where(keep, weights, 0.0)


def sparsegpt_prune(matrix, gram, sparsity, m_by_n=None, block_size=128, damping=0.01):
    """The pruned and updated matrix.

    Args:
        matrix: `(inputs, outputs)` float weights.
        gram: `(inputs, inputs)` sum of `x x^T` over calibration rows.
        sparsity: fraction of each output's weights to prune (unused with
            `m_by_n`).
        m_by_n: optional `(m, n)`: m zeros in every n consecutive inputs.
        block_size: inputs processed together (the lazy batch update); it is
            rounded down to a multiple of n for N:M.
        damping: added to the Hessian's diagonal, as a fraction of its mean.

    Returns:
        The `(inputs, outputs)` float32 matrix with exact zeros at the pruned
        weights and the kept ones updated to compensate.
    """
    num_inputs = matrix.shape[0]
    factor = np.asarray(ops.convert_to_numpy(inverse_hessian_factor(gram, damping)), np.float64)
    weights = np.asarray(ops.convert_to_numpy(matrix), np.float64)
    if m_by_n is not None:
        block_size = max(m_by_n[1], block_size - block_size % m_by_n[1])
    counts = None if m_by_n is not None else block_counts(num_inputs, block_size, sparsity)
    return obs_prune(weights, factor, counts, m_by_n, block_size).astype(np.float32)
