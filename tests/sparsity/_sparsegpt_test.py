import numpy as np
import pytest

from tfcompress.sparsity._sparsegpt import (
    block_counts,
    inverse_hessian_factor,
    obs_prune,
    sparsegpt_prune,
)


def _reference(weights, factor, counts, m_by_n, block_size):
    """SparseGPT without lazy batching: every error moves onto all later inputs at once.

    Masks are chosen when the loop reaches a block (or an N:M group) from the
    weights as updated so far, as in the paper's Algorithm 1.
    """
    w = np.array(weights, np.float64)
    num_inputs = w.shape[0]
    keep = np.ones(w.shape, bool)
    for j in range(num_inputs):
        block, offset = divmod(j, block_size)
        if counts is not None and offset == 0:
            rows = slice(j, min(j + block_size, num_inputs))
            saliency = (w[rows] / np.diag(factor)[rows, None]) ** 2
            for column in range(w.shape[1]):
                order = np.argsort(-saliency[:, column], kind="stable")
                keep[rows, column] = False
                keep[
                    np.arange(rows.start, rows.stop)[order[: len(order) - counts[block]]], column
                ] = True
        if m_by_n is not None and j % m_by_n[1] == 0:
            rows = slice(j, j + m_by_n[1])
            saliency = (w[rows] / np.diag(factor)[rows, None]) ** 2
            for column in range(w.shape[1]):
                order = np.argsort(-saliency[:, column], kind="stable")
                keep[rows, column] = False
                keep[j + order[: m_by_n[1] - m_by_n[0]], column] = True
        error = np.where(keep[j], 0.0, w[j]) / factor[j, j]
        w[j:] -= np.outer(factor[j, j:], error)
    return np.where(keep, w, 0.0)


def _problem(inputs=96, outputs=24, rows=512, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, inputs)) @ rng.normal(size=(inputs, inputs)) / np.sqrt(inputs)
    weights = rng.normal(size=(inputs, outputs))
    factor = np.asarray(inverse_hessian_factor(x.T @ x, 0.01), np.float64)
    return weights, factor, x


@pytest.mark.parametrize(
    "sparsity, m_by_n, block_size", [(0.5, None, 32), (0.7, None, 40), (None, (2, 4), 32)]
)
def test_lazy_batch_updates_equal_the_column_by_column_reference(sparsity, m_by_n, block_size):
    weights, factor, _ = _problem()
    counts = None if m_by_n else block_counts(weights.shape[0], block_size, sparsity)
    fast = obs_prune(weights, factor, counts, m_by_n, block_size)
    expected = _reference(weights, factor, counts, m_by_n, block_size)
    np.testing.assert_array_equal(fast == 0, expected == 0)
    np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_sparsegpt_prune_has_the_requested_zeros_and_updates_the_kept_weights():
    weights, factor, x = _problem()
    gram = x.T @ x
    pruned = sparsegpt_prune(weights.astype("float32"), gram, 0.5, block_size=32)
    assert pruned.dtype == np.float32
    np.testing.assert_array_equal((pruned == 0).sum(axis=0), np.full(weights.shape[1], 48))
    kept = pruned != 0
    assert not np.allclose(pruned[kept], weights[kept], atol=1e-3)
    masked = np.where(kept, weights, 0.0)
    assert np.linalg.norm(x @ (pruned - weights)) < 0.8 * np.linalg.norm(x @ (masked - weights))
