"""Per-layer ranks, sizes and errors of a factorized model."""

import numpy as np

from tfcompress.core.checks import ensure_keras3_model
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.wrapper import CompressionWrapper
from tfcompress.evaluation._table import format_number, format_table
from tfcompress.low_rank._base import LowRankLayer

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
)


class LowRankReport:
    """The factorized layers of a model, from `low_rank_report(model)`.

    Attributes:
        rows: one dict per factorized layer: `path`, `class`, `shape`
            (`[m, n]`), `rank`, `params_before` (kernel and bias of the
            replaced layer), `params_after`, `weight_error` (relative
            Frobenius error of the factors' product to the replaced kernel)
            and `output_error` (the same on the layer's outputs for the
            representative data; None without data), both as measured when
            factorized.
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
            ]
        )
        return format_table(list(_HEADERS), lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return f"<LowRankReport: {len(self.rows)} layers, {self.params_after}/{self.params_before} parameters>"


def _unwrapped(layer):
    while isinstance(layer, CompressionWrapper):
        layer = layer.layer
    return layer


def low_rank_report(model):
    """Shape, rank, parameters and errors of every factorized layer.

    Args:
        model: a Keras 3 model, usually from `tfcompress.low_rank.factorize`.

    Returns:
        A `LowRankReport` (empty rows when nothing is factorized).

    Raises:
        TypeError: when `model` is not a Keras 3 model.

    Example:

    ```python
    print(tfcompress.low_rank.low_rank_report(small))
    ```
    """
    ensure_keras3_model(model, "model")
    rows = []
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
            }
        )
    return LowRankReport(rows)
