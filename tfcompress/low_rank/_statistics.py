"""XᵀX and mean |x| of each layer's inputs on representative data."""

import numpy as np
from keras import ops

from tfcompress.core.batches import drop_labels, iterate_batches
from tfcompress.core.intercept_calls import intercept_calls


class InputStatistics:
    """What one layer saw: XᵀX (float64), sum of |x|, rows and examples."""

    def __init__(self, size):
        self.gram = np.zeros((size, size))
        self.abs_sum = np.zeros(size)
        self.rows = 0
        self.examples = 0

    @property
    def abs_mean(self):
        return self.abs_sum / max(self.rows, 1)

    @property
    def rows_per_example(self):
        return max(1, self.rows // max(self.examples, 1))


def gather_statistics(model, specs, data):
    """Runs `model` eagerly on `data` and accumulates each layer's inputs.

    Args:
        model: the model whose layers `specs` describes.
        specs: `{key: KernelSpec}`.
        data: representative inputs, any form `iterate_batches` reads.

    Returns:
        `{key: InputStatistics}`.

    Raises:
        ValueError: when `data` holds no batch or a layer was never called.
    """
    stats = {key: InputStatistics(spec.shape[0]) for key, spec in specs.items()}
    by_layer = {id(spec.layer): key for key, spec in specs.items()}

    def accumulate(layer, inputs, outputs):
        key = by_layer[id(layer)]
        # One batch's XᵀX in the layer's float32 is exact enough; the sum over
        # batches is float64.
        rows = ops.cast(specs[key].input_rows(inputs), "float32")
        entry = stats[key]
        entry.gram += ops.convert_to_numpy(ops.matmul(ops.transpose(rows), rows))
        entry.abs_sum += ops.convert_to_numpy(ops.sum(ops.abs(rows), axis=0))
        entry.rows += int(rows.shape[0])
        entry.examples += int(inputs.shape[0])

    num_inputs = len(model.inputs) if getattr(model, "_inputs", None) else None
    batches = 0
    with intercept_calls([spec.layer for spec in specs.values()], accumulate):
        for batch in iterate_batches(data):
            model(drop_labels(batch, num_inputs), training=False)
            batches += 1
    if batches == 0:
        raise ValueError(
            "`representative_data` yielded no batch; pass at least one batch of model inputs."
        )
    missing = [key for key, entry in stats.items() if entry.rows == 0]
    if missing:
        raise ValueError(
            f"Layers {missing[:5]} were never called on `representative_data`; "
            "pass inputs that run the whole model, or leave those layers out of `layers`."
        )
    return stats


def output_error(matrix, product, gram):
    """`||X (W - P)|| / ||X W||` from XᵀX alone: `tr(Dᵀ XᵀX D)` for D = W and W - P.

    Args:
        matrix: the `(m, n)` kernel W, float64.
        product: its `(m, n)` approximation P.
        gram: XᵀX `(m, m)` of the layer's inputs.

    Returns:
        The relative error, a float (0 when X W is 0).
    """
    delta = matrix - product
    total = float(np.sum((gram @ matrix) * matrix))
    error = float(np.sum((gram @ delta) * delta))
    return float(np.sqrt(max(error, 0.0) / total)) if total > 0 else 0.0
