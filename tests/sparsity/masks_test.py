import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tfcompress.sparsity.masks import (
    is_m_by_n_sparse,
    m_by_n_mask,
    magnitude_mask,
    sparsity,
)


def _np(x):
    return ops.convert_to_numpy(x)


def _random(shape, seed=0):
    # Distinct non-zero magnitudes, so the expected choice is unambiguous.
    rng = np.random.default_rng(seed)
    values = rng.permutation(np.prod(shape)).reshape(shape) + 1.0
    signs = rng.choice([-1.0, 1.0], size=shape)
    return (values * signs / 7.0).astype("float32")


def _assert_uniform_tiles(mask_2d, rows, cols):
    for r in range(0, mask_2d.shape[0], rows):
        for c in range(0, mask_2d.shape[1], cols):
            tile = mask_2d[r : r + rows, c : c + cols]
            assert tile.min() == tile.max(), (r, c, tile)


@pytest.mark.parametrize("shape", [(10, 7), (3, 3, 4, 5), (17,), (2, 4, 8)])
@pytest.mark.parametrize("target", [0.0, 0.1, 0.25, 0.5, 0.9, 0.99])
def test_unstructured_prunes_exactly_round_sparsity_times_size(shape, target):
    weights = _random(shape)
    mask = _np(magnitude_mask(weights, target))
    size = weights.size
    assert mask.shape == shape
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert np.sum(mask == 0) == min(round(target * size), size - 1)
    kept, pruned = np.abs(weights[mask == 1]), np.abs(weights[mask == 0])
    if pruned.size:
        assert pruned.max() < kept.min()


def test_ties_prune_exactly_and_later_positions_first():
    mask = _np(magnitude_mask(np.ones((4, 5), "float32"), 0.5))
    assert np.sum(mask == 0) == 10
    np.testing.assert_array_equal(mask.reshape(-1), [1] * 10 + [0] * 10)

    mask = _np(magnitude_mask(np.array([3.0, -1.0, 1.0, 1.0, 2.0]), 0.4))
    np.testing.assert_array_equal(mask, [1, 1, 0, 0, 1])

    zeros = np.zeros((6, 6), "float32")
    assert np.sum(_np(magnitude_mask(zeros, 1 / 3)) == 0) == 12


def test_always_keeps_one_weight():
    np.testing.assert_array_equal(_np(magnitude_mask(np.array([5.0]), 0.9)), [1])
    mask = _np(magnitude_mask(np.array([1.0, 2.0, 3.0, 4.0]), 0.9))
    np.testing.assert_array_equal(mask, [0, 0, 0, 1])


def test_tensor_sparsity_inside_tf_function_matches_python_float():
    weights = _random((12, 10))

    @tf.function
    def masks(target):
        return (
            magnitude_mask(weights, target),
            magnitude_mask(weights, target, block_size=(3, 2)),
        )

    for target in (0.0, 0.3, 0.75):
        unstructured, blocks = masks(tf.constant(target))
        np.testing.assert_array_equal(_np(unstructured), _np(magnitude_mask(weights, target)))
        np.testing.assert_array_equal(_np(blocks), _np(magnitude_mask(weights, target, (3, 2))))


def test_mask_dtype_follows_float_weights():
    assert ops.dtype(magnitude_mask(np.ones(4, "float16"), 0.5)) == "float16"
    assert ops.dtype(magnitude_mask(np.arange(4), 0.5)) == "float32"
    assert ops.dtype(m_by_n_mask(np.ones((4, 2), "float16"), 2, 4, 0)) == ("float16")


@pytest.mark.parametrize("pooling", ["AVG", "MAX", "avg"])
@pytest.mark.parametrize("shape, block", [((16, 12), (4, 3)), ((10, 7), (4, 3))])
def test_block_mask_prunes_whole_lowest_scoring_blocks(shape, block, pooling):
    weights = _random(shape, seed=1)
    mask = _np(magnitude_mask(weights, 0.5, block_size=block, block_pooling_type=pooling))
    _assert_uniform_tiles(mask, *block)

    pool = np.max if pooling.upper() == "MAX" else np.mean
    scores, tile_masks = [], []
    for r in range(0, shape[0], block[0]):
        for c in range(0, shape[1], block[1]):
            scores.append(pool(np.abs(weights[r : r + block[0], c : c + block[1]])))
            tile_masks.append(mask[r, c])
    scores, tile_masks = np.array(scores), np.array(tile_masks)
    assert np.sum(tile_masks == 0) == round(0.5 * len(scores))
    assert scores[tile_masks == 0].max() < scores[tile_masks == 1].min()


def test_partial_edge_block_average_counts_only_real_weights():
    # Bottom tile is one real row (mean 1.2); zero padding would give 0.6.
    weights = np.array([[1.0, 1.0], [1.0, 1.0], [1.2, 1.2]], "float32")
    mask = _np(magnitude_mask(weights, 0.5, block_size=(2, 2)))
    np.testing.assert_array_equal(mask, [[0, 0], [0, 0], [1, 1]])


def test_avg_and_max_pooling_choose_differently():
    weights = np.array([[0.0, 4.0, 3.0, 3.0]], "float32")
    avg = _np(magnitude_mask(weights, 0.5, (1, 2), "AVG"))
    largest = _np(magnitude_mask(weights, 0.5, (1, 2), "MAX"))
    np.testing.assert_array_equal(avg, [[0, 0, 1, 1]])
    np.testing.assert_array_equal(largest, [[1, 1, 0, 0]])


def test_block_mask_on_conv_kernel_uses_last_axis_as_columns():
    weights = _random((3, 3, 4, 8), seed=2)
    mask = _np(magnitude_mask(weights, 0.5, block_size=(4, 4)))
    assert mask.shape == weights.shape
    flat = mask.reshape(-1, 8)
    _assert_uniform_tiles(flat, 4, 4)
    assert np.sum(flat[::4, ::4] == 0) == round(0.5 * 9 * 2)


def _kept_top_in_groups(weights, mask, n, axis):
    w = np.moveaxis(np.abs(weights), axis, -1).reshape(-1, n)
    k = np.moveaxis(mask, axis, -1).reshape(-1, n)
    for group, keep in zip(w, k):
        if (keep == 0).any():
            assert group[keep == 0].max() < group[keep == 1].min()


# Dense (in, out), Conv2D (h, w, in, out) and EinsumDense kernels.
KERNELS = [((16, 8), 0), ((3, 3, 8, 4), 2), ((3, 3, 8, 4), -2), ((8, 2, 4), 0), ((2, 4, 8), 1)]


@pytest.mark.parametrize(
    "shape, axis, m, n",
    [
        (shape, axis, m, n)
        for shape, axis in KERNELS
        for m, n in [(2, 4), (1, 4), (4, 8)]
        if shape[axis] % n == 0
    ],
)
def test_m_by_n_mask_keeps_largest_in_every_group(shape, axis, m, n):
    weights = _random(shape, seed=3)
    mask = _np(m_by_n_mask(weights, m, n, axis))
    assert mask.shape == shape
    groups = np.moveaxis(mask, axis, -1).reshape(-1, n)
    np.testing.assert_array_equal(np.sum(groups == 0, axis=1), m)
    _kept_top_in_groups(weights, mask, n, axis)
    assert bool(is_m_by_n_sparse(weights * mask, m, n, axis))
    assert float(sparsity(weights * mask)) == pytest.approx(m / n)


def test_m_by_n_groups_are_along_the_given_axis():
    weights = _random((8, 8), seed=4)
    masked = weights * _np(m_by_n_mask(weights, 2, 4, axis=0))
    assert bool(is_m_by_n_sparse(masked, 2, 4, axis=0))
    assert not bool(is_m_by_n_sparse(masked, 2, 4, axis=1))


def test_m_by_n_ties_keep_earlier_positions():
    mask = _np(m_by_n_mask(np.ones((8, 1), "float32"), 2, 4, axis=0))
    np.testing.assert_array_equal(mask[:, 0], [1, 1, 0, 0, 1, 1, 0, 0])


def test_m_by_n_inside_tf_function():
    weights = _random((8, 6), seed=5)
    graph_mask = tf.function(lambda w: m_by_n_mask(w, 2, 4, 0))(weights)
    np.testing.assert_array_equal(_np(graph_mask), _np(m_by_n_mask(weights, 2, 4, 0)))


def test_sparsity_and_checker_on_hand_written_values():
    assert float(sparsity(np.array([0.0, 1.0, 0.0, 2.0]))) == 0.5
    assert float(sparsity(np.ones((3, 3)))) == 0.0
    assert bool(is_m_by_n_sparse(np.array([[0, 0, 1, 1], [1, 0, 0, 0]]), 2, 4, 1))
    assert not bool(is_m_by_n_sparse(np.array([[0, 0, 1, 1], [0, 1, 1, 1]]), 2, 4, 1))


def test_indivisible_axis_error_names_shape_and_suggests_sizes():
    message = (
        r"weights of shape \(6, 8\) have 6 there, which is not divisible by 4\."
        r" Use a group size n > m that divides 6 \(n in \[3, 6\]\)"
    )
    with pytest.raises(ValueError, match=message):
        m_by_n_mask(np.ones((6, 8)), 2, 4, axis=0)
    with pytest.raises(ValueError, match=r"shape \(3, 3, 6, 4\)"):
        is_m_by_n_sparse(np.ones((3, 3, 6, 4)), 2, 4, axis=2)
    with pytest.raises(ValueError, match=r"No group size n in 3\.\.16 divides 17"):
        m_by_n_mask(np.ones((17, 2)), 2, 4, axis=0)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda w: magnitude_mask(w, 1.0),
            ValueError,
            r"`sparsity` must be in \[0, 1\)\. Received: sparsity=1\.0",
        ),
        (lambda w: magnitude_mask(w, -0.2), ValueError, r"sparsity=-0\.2"),
        (lambda w: magnitude_mask(w, True), TypeError, r"sparsity=True"),
        (
            lambda w: magnitude_mask(w, 0.5, block_size=(0, 1)),
            ValueError,
            r"`block_size` must be a pair of positive integers.*\(0, 1\)",
        ),
        (lambda w: magnitude_mask(w, 0.5, block_size=(2,)), ValueError, r"block_size=\(2,\)"),
        (lambda w: magnitude_mask(w, 0.5, block_size=(1.5, 2)), ValueError, r"block_size"),
        (lambda w: magnitude_mask(w, 0.5, block_size="4x4"), ValueError, r"block_size='4x4'"),
        (
            lambda w: magnitude_mask(w, 0.5, (2, 2), "MEAN"),
            ValueError,
            r"`block_pooling_type` must be 'AVG' or 'MAX'\. Received: "
            r"block_pooling_type='MEAN'",
        ),
        (lambda w: m_by_n_mask(w, 0, 4, 0), ValueError, r"0 < m < n.*Received: m=0, n=4"),
        (lambda w: m_by_n_mask(w, 4, 4, 0), ValueError, r"m=4, n=4"),
        (lambda w: m_by_n_mask(w, 2.0, 4, 0), TypeError, r"`m` must be an integer"),
        (
            lambda w: is_m_by_n_sparse(w, 2, 4, 2),
            ValueError,
            r"`axis` must be in \[-2, 2\) for weights of shape \(8, 4\)\. "
            r"Received: axis=2",
        ),
        (lambda w: m_by_n_mask(w, 2, 4, 0.0), TypeError, r"`axis` must be an integer"),
    ],
)
def test_validation_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(np.ones((8, 4), "float32"))
