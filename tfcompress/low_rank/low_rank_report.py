"""Per-layer ranks, sizes and errors of a factorized model."""

import keras
import numpy as np

from tfcompress.core.checks import ensure_keras3_model
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.wrapper import CompressionWrapper
from tfcompress.evaluation._table import format_number, format_table
from tfcompress.low_rank._base import LowRankLayer
from tfcompress.low_rank._selection import candidates
from tfcompress.low_rank._statistics import gather_statistics, output_error

_HEADERS = (
    "layer",
    "class",
    "matrix",
    "rank",
    "params before",
    "params after",
    "kept",
    "weight error",
    "output error",
    "errors from",
)


class LowRankReport:
    """The factorized layers of a model, from `low_rank_report(model)`.

    Attributes:
        rows: one dict per factorized layer: `path`, `class`, `shape`
            (`[m, n]`), `rank`, `params_before` (kernel and bias of the
            replaced layer), `params_after`, `weight_error` (relative
            Frobenius error of the factors' product to the replaced kernel)
            `output_error` (the same on the layer's outputs for the
            representative data; None without data) and `errors_from`:
            "factorization" when the errors are the ones recorded by
            `factorize` (training moves the factors, the record stays), or
            "original" when they were just measured against the original
            model's kernels.
        params_before: sum over the rows.
        params_after: sum over the rows.
    """

    def __init__(self, rows):
        self.rows = list(rows)
        self.params_before = sum(row["params_before"] for row in self.rows)
        self.params_after = sum(row["params_after"] for row in self.rows)

    def as_dict(self):
        """`{"rows", "params_before", "params_after"}`, JSON-compatible."""
        return {
            "rows": self.rows,
            "params_before": self.params_before,
            "params_after": self.params_after,
        }

    def table(self):
        """An aligned text table, one line per layer, then the total."""
        lines = [
            [
                row["path"],
                row["class"],
                "x".join(str(d) for d in row["shape"]),
                str(row["rank"]),
                str(row["params_before"]),
                str(row["params_after"]),
                f"{row['params_after'] / row['params_before']:.3f}",
                format_number(row["weight_error"]),
                format_number(row["output_error"]),
                row["errors_from"],
            ]
            for row in self.rows
        ]
        kept = self.params_after / self.params_before if self.params_before else 1.0
        lines.append(
            [
                f"total ({len(self.rows)} layers)",
                "",
                "",
                "",
                str(self.params_before),
                str(self.params_after),
                f"{kept:.3f}",
                "",
                "",
                "",
            ]
        )
        return format_table(list(_HEADERS), lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        kept = f"{self.params_after}/{self.params_before}"
        return f"<LowRankReport: {len(self.rows)} layers, {kept} parameters>"


def _unwrapped(layer):
    while isinstance(layer, CompressionWrapper):
        layer = layer.layer
    return layer


def _matrix(kernel, rows):
    return np.asarray(keras.ops.convert_to_numpy(kernel), dtype="float64").reshape(rows, -1)


def _original_specs(original, paths):
    """`{path: KernelSpec}` of `original`'s layers at the factorized paths.

    The same candidates `factorize` chose from, so a path it factorized is
    found here unless `original` is another model.
    """
    specs, skipped = candidates(original)
    missing = [path for path in paths if path not in specs]
    if missing:
        reasons = {path: skipped[path] for path in missing if path in skipped}
        raise ValueError(
            f"`original` has no Dense/EinsumDense at {missing[:4]}, the paths of factorized "
            "layers of `model`"
            + (f" (there: {reasons})" if reasons else "")
            + "; pass the model that was given to `factorize`."
        )
    return {path: specs[path] for path in paths}


def low_rank_report(model, original=None, representative_data=None):
    """Shape, rank, parameters and errors of every factorized layer.

    The errors `factorize` records are those of the factors it computed;
    fine-tuning moves the factors and not the record, so without `original`
    every row says `errors_from="factorization"`. With `original`, both
    errors are measured now from the factors the model holds.

    Args:
        model: a Keras 3 model, usually from `tfcompress.low_rank.factorize`.
        original: optional, the model that was factorized: the weight error
            is then recomputed against its kernels (same layer paths).
        representative_data: optional, with `original`: model inputs (any
            form `factorize` reads) on which the output error is recomputed,
            from the inputs each original layer sees.

    Returns:
        A `LowRankReport` (empty rows when nothing is factorized).

    Raises:
        TypeError: when `model` or `original` is not a Keras 3 model.
        ValueError: when `representative_data` comes without `original`, or
            `original` lacks a factorized layer's path or shape.

    Example:

    ```python
    print(tfcompress.low_rank.low_rank_report(small))
    print(tfcompress.low_rank.low_rank_report(small, original=backbone))
    ```
    """
    ensure_keras3_model(model, "model")
    if original is not None:
        ensure_keras3_model(original, "original")
    elif representative_data is not None:
        raise ValueError(
            "`representative_data` measures output errors against the original kernels; "
            "pass `original` (the model given to `factorize`) too."
        )
    rows, kernels = [], []
    for ref in walk_layers(model, descend=lambda layer: not isinstance(layer, LowRankLayer)):
        layer = ref.layer
        if not isinstance(layer, LowRankLayer):
            continue
        # Pruning and QAT wrap the factor layers in place.
        first, second = _unwrapped(layer.first), _unwrapped(layer.second)
        bias = int(np.prod(second.bias.shape)) if second.bias is not None else 0
        first, second = first.kernel, second.kernel
        m = int(np.prod(first.shape[:-1]))
        n = int(np.prod(second.shape[1:]))
        rows.append(
            {
                "path": ref.path,
                "class": type(layer).__name__,
                "shape": [m, n],
                "rank": layer.rank,
                "params_before": m * n + bias,
                "params_after": layer.rank * (m + n) + bias,
                "weight_error": layer.weight_error,
                "output_error": layer.output_error,
                "errors_from": "factorization",
            }
        )
        kernels.append((first, second))
    if original is not None and rows:
        _measure(original, rows, kernels, representative_data)
    return LowRankReport(rows)


def _measure(original, rows, kernels, representative_data):
    """Replaces the recorded errors of `rows` by those of the factor `kernels` now."""
    specs = _original_specs(original, [row["path"] for row in rows])
    for row in rows:
        if specs[row["path"]].shape != tuple(row["shape"]):
            raise ValueError(
                f"`original`'s {row['path']!r} is a {specs[row['path']].shape} matrix, the "
                f"factorized layer {tuple(row['shape'])}; pass the model given to `factorize`."
            )
    stats = (
        gather_statistics(original, specs, representative_data)
        if representative_data is not None
        else {}
    )
    for row, (first, second) in zip(rows, kernels):
        m = row["shape"][0]
        product = _matrix(first, m) @ _matrix(second, row["rank"])
        matrix = specs[row["path"]].matrix(
            keras.ops.convert_to_numpy(specs[row["path"]].layer.kernel)
        )
        norm = np.linalg.norm(matrix)
        row["weight_error"] = float(np.linalg.norm(matrix - product) / norm) if norm else 0.0
        entry = stats.get(row["path"])
        row["output_error"] = output_error(matrix, product, entry.gram) if entry else None
        row["errors_from"] = "original"
