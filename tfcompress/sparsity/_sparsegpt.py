"""SparseGPT (Frantar & Alistarh, 2023) for one `(inputs, outputs)` matrix.

Optimal Brain Surgeon with the layer's Hessian `H = X^T X` (X the layer's
calibration inputs), processed over inputs in blocks. Within a block the
mask is chosen by the OBS saliency `w^2 / [H^-1]_jj^2`, computed on the
weights as already updated by the previous inputs; pruning input `j` then
moves the error `(w - q) / [H^-1]_jj` onto the inputs after it through the
row `j` of the upper Cholesky factor of `H^-1`. That factor is upper
triangular, so subtracting the whole outer product leaves earlier inputs
unchanged and turns column `j` into its pruned value.
"""

from keras import ops

from tfcompress.sparsity._wanda import keep_largest_per_output, pruned_per_output


def inverse_hessian_factor(gram, damping):
    """Upper Cholesky factor of the damped `H^-1`, float64.

    Inputs that were never non-zero (a dead ReLU unit) have a zero diagonal;
    they get 1 there, so their weights are ranked by magnitude alone.
    """
    hessian = ops.cast(gram, "float64")
    diagonal = ops.diagonal(hessian)
    dead = ops.cast(ops.equal(diagonal, 0.0), "float64")
    hessian = hessian + ops.diag(dead)
    diagonal = ops.diagonal(hessian)
    size = hessian.shape[0]
    hessian = hessian + damping * ops.mean(diagonal) * ops.eye(size, dtype="float64")
    inverse = ops.linalg.inv(hessian)
    return ops.transpose(ops.linalg.cholesky(inverse))


def _block_counts(num_inputs, block_size, sparsity):
    """Pruned weights per output in each block; they add up to the total."""
    edges = list(range(0, num_inputs, block_size)) + [num_inputs]
    total = pruned_per_output(num_inputs, sparsity)
    cumulative = [min(int(round(sparsity * e)), total) for e in edges]
    cumulative[-1] = total
    return [b - a for a, b in zip(cumulative, cumulative[1:])]


def _group_mask(block, diagonal, start, m, n):
    """Keep-mask `(n, outputs)` of the group of n inputs from `start`."""
    group = block[start : start + n]
    saliency = ops.square(group) / ops.square(ops.expand_dims(diagonal[start : start + n], 1))
    return keep_largest_per_output(saliency, m)


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
    factor = ops.cast(inverse_hessian_factor(gram, damping), "float32")
    weights = ops.cast(matrix, "float32")
    if m_by_n is not None:
        block_size = max(m_by_n[1], block_size - block_size % m_by_n[1])
    counts = None if m_by_n is not None else _block_counts(num_inputs, block_size, sparsity)
    finished = []
    for index, first in enumerate(range(0, num_inputs, block_size)):
        last = min(first + block_size, num_inputs)
        block = weights[first:last]
        block_factor = factor[first:last, first:last]
        diagonal = ops.diagonal(block_factor)
        if counts is not None:
            saliency = ops.square(block) / ops.square(ops.expand_dims(diagonal, 1))
            keep = keep_largest_per_output(saliency, counts[index])
        else:
            groups = []
        errors = []
        for j in range(last - first):
            if counts is None and j % m_by_n[1] == 0:
                groups.append(_group_mask(block, diagonal, j, *m_by_n))
                keep_row = groups[-1][0]
            elif counts is None:
                keep_row = groups[-1][j % m_by_n[1]]
            else:
                keep_row = keep[j]
            row = block[j]
            error = row * (1.0 - keep_row) / diagonal[j]
            block = block - ops.outer(block_factor[j], error)
            errors.append(error)
        if counts is None:
            keep = ops.concatenate(groups, axis=0)
        finished.append(block * keep)
        if last < num_inputs:
            weights = ops.concatenate(
                [
                    weights[:last],
                    weights[last:]
                    - ops.matmul(ops.transpose(factor[first:last, last:]), ops.stack(errors)),
                ],
                axis=0,
            )
    return ops.concatenate(finished, axis=0)
