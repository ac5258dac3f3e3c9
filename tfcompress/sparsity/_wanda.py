"""Pruning masks from scores, per output, in `keras.ops`.

Matrices are `(inputs, outputs)`, as Keras stores Dense kernels: column `j`
holds the weights of output `j`, and "per output row" in the Wanda paper's
`(out, in)` layout is "per column" here.
"""

from keras import ops

from tfcompress.sparsity.masks import m_by_n_mask


def pruned_per_output(num_inputs, sparsity):
    """How many of each output's `num_inputs` weights are pruned."""
    return min(int(round(sparsity * num_inputs)), num_inputs - 1)


def keep_largest_per_output(scores, count):
    """Float mask of `scores`' shape with the `count` smallest of each column 0.

    Ties are broken by index (the later input is pruned first), so every
    column loses exactly `count` weights.
    """
    num_inputs = scores.shape[0]
    if count == 0:
        return ops.ones(scores.shape, "float32")
    _, order = ops.top_k(ops.transpose(scores), k=num_inputs)
    ranks = ops.argsort(order, axis=-1)
    return ops.transpose(ops.cast(ops.less(ranks, num_inputs - count), "float32"))


def score_mask(scores, sparsity, m_by_n=None):
    """Mask pruning the lowest `scores` of each output (or of each N:M group).

    Args:
        scores: non-negative `(inputs, outputs)` scores.
        sparsity: fraction of each output's weights to prune (unused with
            `m_by_n`).
        m_by_n: optional `(m, n)`: m zeros in every n consecutive inputs.

    Returns:
        A float32 mask of `scores`' shape.
    """
    if m_by_n is not None:
        return m_by_n_mask(scores, m_by_n[0], m_by_n[1], axis=0)
    return keep_largest_per_output(scores, pruned_per_output(scores.shape[0], sparsity))


def wanda_scores(matrix, input_norms):
    """Wanda's |W| * ||X||_2, the norm taken per input feature over tokens.

    Args:
        matrix: `(inputs, outputs)` weights.
        input_norms: `(inputs,)` L2 norms of each input feature.

    Returns:
        `(inputs, outputs)` scores.
    """
    return ops.abs(matrix) * ops.expand_dims(ops.cast(input_norms, "float32"), 1)
