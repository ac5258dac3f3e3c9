"""Per-weight sparsity report of any Keras model."""

import numpy as np
from keras import ops

from tfcompress.core.checks import ensure_built, ensure_keras3_layer
from tfcompress.core.layer_tree import layers_of
from tfcompress.sparsity.masks import is_m_by_n_sparse

# Block sides tried when detecting block sparsity (powers of two, so a block
# that is uniform is made of uniform halves and the search can stop early).
_BLOCK_SIDES = (1, 2, 4, 8, 16, 32, 64)
_COLUMNS = ("path", "shape", "size", "zeros", "sparsity", "structure")
# Names of >= 2-D weights that are not prunable kernels (EinsumDense biases
# are 2-D, e.g. (heads, head_dim); quantized layers keep 2-D scales).
_NOT_KERNELS = ("bias", "beta", "gamma", "moving_mean", "moving_variance")


def _is_kernel(weight):
    return (
        len(weight.shape) >= 2
        and weight.name not in _NOT_KERNELS
        and not weight.name.endswith("_scale")
    )


def _masked_weights(model):
    """Maps id(weight) -> mask for layers exposing `pruning_vars`."""
    masks = {}
    for layer in layers_of(model):
        for pair in getattr(layer, "pruning_vars", None) or ():
            masks[id(pair[0])] = pair[1]
    return masks


def _uniform_blocks(zero, rows_per_block, cols_per_block):
    """True if every aligned tile of `zero` (2-D bool) is all True or all False.

    Tiles on the bottom and right edges may be partial.
    """
    rows, cols = zero.shape
    padded = np.pad(
        zero.astype(np.int32),
        ((0, -rows % rows_per_block), (0, -cols % cols_per_block)),
    )
    block_rows = padded.shape[0] // rows_per_block
    block_cols = padded.shape[1] // cols_per_block
    zeros = padded.reshape(block_rows, rows_per_block, block_cols, cols_per_block).sum(axis=(1, 3))
    row_starts = rows_per_block * np.arange(block_rows)
    col_starts = cols_per_block * np.arange(block_cols)
    real = np.outer(
        np.minimum(rows_per_block, rows - row_starts),
        np.minimum(cols_per_block, cols - col_starts),
    )
    return bool(np.all((zeros == 0) | (zeros == real)))


def _block_shape(zero):
    """Largest (rows, cols) power-of-two tile `zero` is uniform on.

    Uses that a uniform (r, c) tiling implies uniform (r/2, c) and (r, c/2)
    tilings: the largest valid c can only shrink as r grows, so the search is
    a staircase of at most ~2 * len(_BLOCK_SIDES) checks, and two for
    unstructured weights.
    """
    rows, cols = zero.shape
    row_sides = [s for s in _BLOCK_SIDES if s < 2 * rows]
    col_sides = [s for s in _BLOCK_SIDES if s < 2 * cols]
    col = 0
    while col + 1 < len(col_sides) and _uniform_blocks(zero, 1, col_sides[col + 1]):
        col += 1
    best = (1, col_sides[col])
    for rows_per_block in row_sides[1:]:
        while col >= 0 and not _uniform_blocks(zero, rows_per_block, col_sides[col]):
            col -= 1
        if col < 0:
            break
        if rows_per_block * col_sides[col] > best[0] * best[1]:
            best = (rows_per_block, col_sides[col])
    return best


def _structure(value, zeros):
    if zeros == 0:
        return "dense"
    if zeros == value.size:
        return "zero"
    if value.ndim < 2:
        return "unstructured"
    for axis in sorted({0, value.ndim - 2}):
        if value.shape[axis] % 4 == 0 and bool(is_m_by_n_sparse(value, 2, 4, axis)):
            return "2:4"
    rows, cols = _block_shape(np.reshape(value == 0, (-1, value.shape[-1])))
    if rows * cols > 1:
        return f"block {rows}x{cols}"
    return "unstructured"


class SparsityReport:
    """Sparsity of every weight of a model, from `sparsity_report(model)`.

    Attributes:
        rows: list of dicts, one per weight, with keys `path` (the variable's
            `.path`), `shape` (tuple), `size`, `zeros`, `sparsity` (float in
            [0, 1]), `structure`: `"dense"` (no zeros), `"zero"` (all
            zeros), `"2:4"`, `"block RxC"` or `"unstructured"`, and `kernel`
            (True for prunable kernels, see `sparsity_report`).
        total_size: number of weights in the kernels (rows whose `kernel`
            key is True).
        total_zeros: number of zeros in those kernels.
        overall_sparsity: `total_zeros / total_size` (0.0 without kernels).
    """

    def __init__(self, rows):
        self.rows = list(rows)
        kernels = [row for row in self.rows if row["kernel"]]
        self.total_size = sum(row["size"] for row in kernels)
        self.total_zeros = sum(row["zeros"] for row in kernels)
        self.num_kernels = len(kernels)
        self.overall_sparsity = self.total_zeros / self.total_size if self.total_size else 0.0

    def as_dict(self):
        """The report as a JSON-compatible dict.

        Returns:
            `{"rows": [...], "total_size", "total_zeros", "overall_sparsity"}`
            with each row's shape as a list.
        """
        return {
            "rows": [dict(row, shape=list(row["shape"])) for row in self.rows],
            "total_size": self.total_size,
            "total_zeros": self.total_zeros,
            "overall_sparsity": self.overall_sparsity,
        }

    def table(self):
        """An aligned text table, one line per weight, then the kernel total.

        Returns:
            A string.
        """
        cells = [list(_COLUMNS)]
        for row in self.rows:
            cells.append(
                [
                    row["path"],
                    str(row["shape"]),
                    str(row["size"]),
                    str(row["zeros"]),
                    f"{100 * row['sparsity']:.2f}%",
                    row["structure"],
                ]
            )
        cells.append(
            [
                f"total ({self.num_kernels} kernels)",
                "",
                str(self.total_size),
                str(self.total_zeros),
                f"{100 * self.overall_sparsity:.2f}%",
                "",
            ]
        )
        widths = [max(len(cell) for cell in column) for column in zip(*cells)]
        numeric = {2, 3, 4}

        def render(line):
            parts = [
                text.rjust(width) if i in numeric else text.ljust(width)
                for i, (text, width) in enumerate(zip(line, widths))
            ]
            return "  ".join(parts).rstrip()

        rule = "-" * len(render(["-" * w for w in widths]))
        lines = [render(cells[0]), rule]
        lines += [render(line) for line in cells[1:-1]]
        lines += [rule, render(cells[-1])]
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (
            f"<SparsityReport: {len(self.rows)} weights, overall sparsity "
            f"{self.overall_sparsity:.4f} over {self.num_kernels} kernels>"
        )


def sparsity_report(model, only_kernels=True):
    """Reports the sparsity and its structure for every weight of `model`.

    Walks `model.weights`, so weights of nested layers (keras-hub blocks
    included) are all listed, each once, by their `.path`. For a layer that
    exposes `pruning_vars` (a list of `(weight, mask, ...)` tuples, as
    tfcompress pruning wrappers do) the effective kernel `weight * mask` is
    reported and the mask variables themselves are left out.

    Structure detection, on the zeros of each weight: `"2:4"` when every 4
    consecutive weights along axis 0 or along axis `ndim - 2` (the input
    axis of Dense `(in, out)` and Conv `(h, w, in, out)` kernels; for a 3-D
    EinsumDense kernel, axis 0 or 1) hold at least 2 zeros; otherwise
    `"block RxC"` for the largest power-of-two tile (up to 64x64) on which
    the weight, viewed as `(-1, shape[-1])` like `magnitude_mask` does, is
    all zero or all non-zero; otherwise `"unstructured"`.

    Args:
        model: a built Keras 3 model or layer.
        only_kernels: when True (the default), list only prunable kernels:
            weights with two or more dimensions (Dense, Conv and EinsumDense
            kernels, embeddings) except those named `bias`, `beta`,
            `gamma`, `moving_mean`, `moving_variance` or `*_scale`. Biases,
            normalization weights and 1-D or scalar state are skipped.

    Returns:
        A `SparsityReport`; `print(report)` shows the table. Its
        `overall_sparsity` is over the prunable kernels either way.

    Raises:
        TypeError: when `model` is not a Keras 3 layer or model.
        ValueError: when `model` is not built.

    Example:

    ```python
    report = tfcompress.sparsity.sparsity_report(model)
    print(report)
    print(report.overall_sparsity)
    ```
    """
    ensure_keras3_layer(model, "model")
    ensure_built(model, "model")
    masks = _masked_weights(model)
    mask_ids = {id(mask) for mask in masks.values()}
    rows, seen = [], set()
    for weight in model.weights:
        if id(weight) in seen or id(weight) in mask_ids:
            continue
        seen.add(id(weight))
        kernel = _is_kernel(weight)
        if only_kernels and not kernel:
            continue
        value = ops.convert_to_numpy(weight)
        if id(weight) in masks:
            mask = ops.convert_to_numpy(masks[id(weight)])
            value = value * mask.astype(value.dtype)
        zeros = int(np.count_nonzero(value == 0))
        rows.append(
            {
                "path": weight.path,
                "shape": tuple(int(d) for d in weight.shape),
                "size": int(value.size),
                "zeros": zeros,
                "sparsity": zeros / value.size if value.size else 0.0,
                "structure": _structure(value, zeros),
                "kernel": kernel,
            }
        )
    return SparsityReport(rows)
