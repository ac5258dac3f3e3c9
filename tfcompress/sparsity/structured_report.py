"""What structured pruning removed: per layer units before and after, parameters, FLOPs."""

import keras
import numpy as np

from tfcompress.core.batches import drop_labels
from tfcompress.core.copy_model import _generated_input
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import walk_layers


def _inputs(model, sample):
    if sample is not None:
        return drop_labels(sample, len(model.inputs) if getattr(model, "inputs", None) else None)
    return _generated_input(model)


_MATMUL_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
)


def _output_dims(layer):
    """Product of the kernel dimensions that index the output (channels, heads)."""
    shape = layer.kernel.shape
    if isinstance(layer, keras.layers.EinsumDense):
        kernel, output = layer.equation.split(",")[1].split("->")
        return np.prod([shape[i] for i, axis in enumerate(kernel) if axis in output])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return shape[-2] * shape[-1]
    return shape[-1]


def matmul_flops(model, sample):
    """FLOPs of one forward pass over `sample` in the layers that have a kernel.

    Each output value of a Dense, EinsumDense or convolution costs two FLOPs
    per kernel entry that feeds it;
    attention score products, norms and activations are left out.

    Returns:
        The FLOPs per example, or None when no input is known.
    """
    inputs = _inputs(model, sample)
    if inputs is None:
        return None
    layers = [ref.layer for ref in walk_layers(model) if isinstance(ref.layer, _MATMUL_LAYERS)]
    total = [0.0]
    batch = keras.tree.flatten(inputs)[0].shape[0] or 1

    def count(layer, _, outputs):
        output = keras.tree.flatten(outputs)[0]
        total[0] += (
            2.0 * np.prod(layer.kernel.shape) * np.prod(output.shape) / _output_dims(layer) / batch
        )

    with intercept_calls(layers, count):
        model(inputs, training=False)
    return total[0]


class StructuredPruningReport:
    """Per pruned layer: kind, units before and after, kept indices; model totals.

    Attributes:
        rows: dicts with "kind", "path", "before", "after" and "kept" (the
            sorted indices of the kept units in the original layer). In
            grouped-query attention (Llama) a unit is a key/value head:
            "before"/"after" count those, and "query_heads_before" /
            "query_heads_after" the query heads they carry.
        params_before, params_after: parameter counts of the whole model.
        flops_before, flops_after: matmul FLOPs per example (see
            `matmul_flops`), or None without a known input.
    """

    def __init__(self):
        self.rows = []
        self.params_before = self.params_after = None
        self.flops_before = self.flops_after = None

    @classmethod
    def start(cls, model, sample):
        report = cls()
        report.params_before = model.count_params()
        report.flops_before = matmul_flops(model, sample)
        return report

    def finish(self, model, decisions, sample):
        """Records `decisions`, `(group, kept indices)` pairs, and the pruned model's totals."""
        self.rows = []
        for group, keep in decisions:
            row = {
                "kind": group.kind,
                "path": group.path,
                "before": group.size,
                "after": len(keep),
                "kept": [int(i) for i in keep],
            }
            if group.query_heads_per_unit:
                row["query_heads_before"] = group.size * group.query_heads_per_unit
                row["query_heads_after"] = len(keep) * group.query_heads_per_unit
            self.rows.append(row)
        self.params_after = model.count_params()
        self.flops_after = matmul_flops(model, sample)

    def kept(self, kind, path):
        """Kept unit indices of the layer at `path` for `kind` (all if untouched)."""
        for row in self.rows:
            if row["kind"] == kind and row["path"] == path:
                return row["kept"]
        return None

    def __str__(self):
        lines = [f"{'kind':8} {'layer':40} {'before':>7} {'after':>7}  query heads"]
        for r in self.rows:
            grouped = "query_heads_before" in r
            kind = "kv heads" if grouped else r["kind"]
            line = f"{kind:8} {r['path']:40} {r['before']:7d} {r['after']:7d}"
            if grouped:
                line += f"  {r['query_heads_before']} -> {r['query_heads_after']}"
            lines.append(line)
        lines.append(f"parameters: {self.params_before:,} -> {self.params_after:,}")
        if self.flops_before is not None:
            lines.append(
                f"matmul FLOPs per example: {self.flops_before:,.0f} -> {self.flops_after:,.0f}"
            )
        return "\n".join(lines)
