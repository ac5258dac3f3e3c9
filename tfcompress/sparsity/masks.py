"""Mask selection for magnitude pruning, in `keras.ops` (any backend).

Pure functions of a weight tensor: no layers, no variables. A mask is a float
tensor of the weight's shape holding 1.0 for kept and 0.0 for pruned weights.
They run eagerly and inside a `tf.function`; the weight's shape must be static.
"""

import numbers

import numpy as np
from keras import ops

from tfcompress.core.checks import check_fraction, check_int, check_pair

_POOLING_TYPES = ("AVG", "MAX")


def _mask_dtype(weights):
    dtype = ops.dtype(weights)
    return dtype if "float" in dtype else "float32"


def _check_sparsity(value):
    # A tensor (a schedule's output inside a traced step) is checked by nobody.
    if isinstance(value, (bool, numbers.Real)):
        check_fraction(value, "sparsity", hint="Pass the fraction of weights to zero, e.g. 0.5.")


def _check_block_size(block_size):
    return check_pair(
        block_size,
        "block_size",
        1,
        expected="a pair of positive integers (rows, cols), e.g. (1, 1) for unstructured or (4, 4)",
    )


def _check_m_n(m, n):
    check_int(m, "m")
    check_int(n, "n")
    if not 0 < m < n:
        raise ValueError(
            "`m` and `n` must satisfy 0 < m < n (m zeros in every n "
            f"consecutive weights, e.g. m=2, n=4). Received: m={m}, n={n}."
        )


def _group_axis(weights, m, n, axis):
    """Validates `axis` and returns it non-negative."""
    shape = tuple(weights.shape)
    rank = len(shape)
    check_int(axis, "axis")
    if not -rank <= axis < rank:
        raise ValueError(
            f"`axis` must be in [{-rank}, {rank}) for weights of shape "
            f"{shape}. Received: axis={axis}."
        )
    axis = axis % rank
    length = shape[axis]
    if length % n:
        sizes = [d for d in range(m + 1, 4 * n + 1) if length % d == 0]
        hint = (
            f"Use a group size n > m that divides {length} (n in {sizes})"
            if sizes
            else f"No group size n in {m + 1}..{4 * n} divides {length}"
        )
        raise ValueError(
            f"m:n sparsity groups n={n} consecutive weights along axis {axis}, "
            f"but weights of shape {shape} have {length} there, which is not "
            f"divisible by {n}. {hint}, or use unstructured or block sparsity "
            "(`magnitude_mask`) for this weight."
        )
    return axis


def _num_pruned(sparsity, count):
    """How many of `count` values to prune: round(sparsity * count), < count."""
    if isinstance(sparsity, numbers.Real):
        return min(int(round(sparsity * count)), count - 1)
    pruned = ops.round(ops.cast(sparsity, "float64") * count)
    return ops.cast(ops.clip(pruned, 0, count - 1), "int32")


def _keep_largest(scores, sparsity):
    """Bool tensor of `scores`' shape, False for the round(s*n) smallest.

    `top_k` lists equal scores in index order, so among ties the ones later in
    row-major order are pruned first; the count is exact whatever the ties.
    """
    count = int(np.prod(scores.shape))
    flat = ops.reshape(scores, (count,))
    _, order = ops.top_k(flat, k=count)
    rank = ops.scatter(ops.expand_dims(order, -1), ops.arange(count, dtype="int32"), (count,))
    keep = ops.less(rank, count - _num_pruned(sparsity, count))
    return ops.reshape(keep, scores.shape)


def _block_counts(length, block):
    """Number of real (unpadded) elements in each block along one axis."""
    starts = np.arange(0, length, block)
    return np.minimum(block, length - starts).astype("float32")


def magnitude_mask(weights, sparsity, block_size=(1, 1), block_pooling_type="AVG"):
    """Mask that zeros the smallest-magnitude weights (or blocks of weights).

    Unstructured (`block_size=(1, 1)`): exactly `round(sparsity * size)`
    weights are pruned, chosen by ranking |w| with `top_k` rather than by a
    threshold, so ties never prune more than asked. Among weights of equal
    magnitude, the later ones in row-major order are pruned first. At least
    one weight is always kept (as TFMOT does).

    Block sparsity: the weight is viewed as a 2-D matrix
    `reshape(weights, (-1, shape[-1]))` (the last axis is the output axis of
    Dense, Conv and EinsumDense kernels, as in TFMOT), cut into
    `block_size = (rows, cols)` tiles, and each tile is scored by the mean
    (`"AVG"`) or max (`"MAX"`) of its |w|. `round(sparsity * num_blocks)`
    tiles are pruned whole. Tiles at the bottom and right edges may be
    partial; their average is over their real weights only.

    Args:
        weights: weight tensor, array or variable of static shape.
        sparsity: fraction to prune in [0, 1): a Python float, or a scalar
            tensor (e.g. from a `PruningSchedule`), which is not range-checked
            but clipped.
        block_size: `(rows, cols)` of the pruning tiles, positive integers.
        block_pooling_type: `"AVG"` or `"MAX"` (case-insensitive).

    Returns:
        A mask of `weights`' shape and float dtype (float32 for integer
        weights) with 0.0 at pruned positions and 1.0 elsewhere.

    Raises:
        TypeError: when `sparsity` is a bool.
        ValueError: when `sparsity`, `block_size` or `block_pooling_type` is
            invalid.

    Example:

    ```python
    kernel = np.random.randn(64, 32).astype("float32")
    mask = tfcompress.sparsity.magnitude_mask(kernel, 0.75, block_size=(4, 1))
    pruned = kernel * mask
    ```
    """
    _check_sparsity(sparsity)
    rows_per_block, cols_per_block = _check_block_size(block_size)
    pooling = str(block_pooling_type).upper()
    if pooling not in _POOLING_TYPES:
        raise ValueError(
            "`block_pooling_type` must be 'AVG' or 'MAX'. Received: "
            f"block_pooling_type={block_pooling_type!r}."
        )
    weights = ops.convert_to_tensor(weights)
    shape = tuple(weights.shape)
    magnitude = ops.abs(ops.cast(weights, "float32"))
    if not np.prod(shape, dtype=int):
        return ops.ones(shape, dtype=_mask_dtype(weights))
    if (rows_per_block, cols_per_block) == (1, 1):
        keep = _keep_largest(magnitude, sparsity)
        return ops.cast(keep, _mask_dtype(weights))

    cols = shape[-1] if shape else 1
    rows = int(np.prod(shape)) // cols if cols else 0
    matrix = ops.reshape(magnitude, (rows, cols))
    pad_rows, pad_cols = -rows % rows_per_block, -cols % cols_per_block
    padded = ops.pad(matrix, ((0, pad_rows), (0, pad_cols)))
    block_rows = (rows + pad_rows) // rows_per_block
    block_cols = (cols + pad_cols) // cols_per_block
    tiles = ops.reshape(padded, (block_rows, rows_per_block, block_cols, cols_per_block))
    if pooling == "MAX":
        scores = ops.max(tiles, axis=(1, 3))
    else:
        counts = np.outer(
            _block_counts(rows, rows_per_block),
            _block_counts(cols, cols_per_block),
        )
        scores = ops.sum(tiles, axis=(1, 3)) / counts
    keep = ops.cast(_keep_largest(scores, sparsity), _mask_dtype(weights))
    keep = ops.repeat(keep, rows_per_block, axis=0)
    keep = ops.repeat(keep, cols_per_block, axis=1)
    return ops.reshape(keep[:rows, :cols], shape)


def _groups(tensor, n, axis):
    """`tensor` with `axis` moved last, as rows of n consecutive values."""
    moved = ops.moveaxis(tensor, axis, -1)
    return ops.reshape(moved, (-1, n)), tuple(moved.shape)


def m_by_n_mask(weights, m, n, axis):
    """Mask with `m` zeros in every `n` consecutive weights along `axis`.

    In each group of `n` consecutive weights along `axis`, the `n - m` largest
    magnitudes are kept (ties kept in index order). Use the kernel's input
    (reduction) axis, the one sparse matrix hardware groups along: 0 for a
    Dense kernel `(in, out)`, 2 (or -2) for a Conv2D kernel
    `(h, w, in, out)`; for an EinsumDense kernel pass its reduction axis.

    Args:
        weights: weight tensor, array or variable of static shape.
        m: zeros per group, 0 < m < n.
        n: group size.
        axis: the axis along which groups are formed; its length must be
            divisible by `n`.

    Returns:
        A mask of `weights`' shape and float dtype, 0.0 at pruned positions.

    Raises:
        TypeError: when `m`, `n` or `axis` is not an integer.
        ValueError: when `m`, `n` or `axis` is out of range or the axis
            length is not divisible by `n` (the message suggests sizes that
            divide it).

    Example:

    ```python
    kernel = np.random.randn(64, 32).astype("float32")
    mask = tfcompress.sparsity.m_by_n_mask(kernel, m=2, n=4, axis=0)  # 2:4
    ```
    """
    _check_m_n(m, n)
    weights = ops.convert_to_tensor(weights)
    axis = _group_axis(weights, m, n, axis)
    magnitude = ops.abs(ops.cast(weights, "float32"))
    groups, moved_shape = _groups(magnitude, n, axis)
    _, kept = ops.top_k(groups, k=n - m)
    keep = ops.sum(ops.one_hot(kept, n, dtype=_mask_dtype(weights)), axis=1)
    return ops.moveaxis(ops.reshape(keep, moved_shape), -1, axis)


def sparsity(weights):
    """Fraction of exact zeros in `weights`.

    Args:
        weights: tensor, array or variable.

    Returns:
        A float32 scalar tensor in [0, 1] (`float()` it for a Python number).

    Example:

    ```python
    tfcompress.sparsity.sparsity(np.array([0.0, 1.0, 0.0, 2.0]))  # 0.5
    ```
    """
    weights = ops.convert_to_tensor(weights)
    return ops.mean(ops.cast(ops.equal(weights, 0), "float32"))


def is_m_by_n_sparse(weights, m, n, axis):
    """Whether every `n` consecutive weights along `axis` hold >= `m` zeros.

    Args:
        weights: tensor, array or variable of static shape.
        m: minimum zeros per group, 0 < m < n.
        n: group size.
        axis: the axis along which groups are formed (see `m_by_n_mask`).

    Returns:
        A boolean scalar tensor (`bool()` it for a Python bool).

    Raises:
        TypeError, ValueError: as `m_by_n_mask`, including when the axis
            length is not divisible by `n`.

    Example:

    ```python
    kernel = kernel * tfcompress.sparsity.m_by_n_mask(kernel, 2, 4, axis=0)
    assert tfcompress.sparsity.is_m_by_n_sparse(kernel, 2, 4, axis=0)
    ```
    """
    _check_m_n(m, n)
    weights = ops.convert_to_tensor(weights)
    axis = _group_axis(weights, m, n, axis)
    groups, _ = _groups(ops.cast(ops.equal(weights, 0), "int32"), n, axis)
    return ops.all(ops.greater_equal(ops.sum(groups, axis=1), m))
