"""Top-k classification accuracy of a Keras model, a LiteRT model or a callable."""

import numpy as np

from tfcompress.core import checks
from tfcompress.evaluation import _runner


def accuracy(model, x, y, top_k=1, batch_size=32):
    """Fraction of samples whose label is among the `top_k` highest scores.

    Args:
        model: a `keras.Model`, a loaded LiteRT model (anything with
            `.run(inputs)`, e.g. `tfcompress.runtime.load(path)`), or a
            callable mapping a batch of `x` to scores. Its output must have one
            score (logit or probability) per class on the last axis.
        x: the inputs: an array, or a list/dict of arrays for multi-input
            models, with the samples on the first axis.
        y: integer labels shaped like the output without its class axis, or
            one-hot labels shaped like the output.
        top_k: a prediction is correct when the label is among the `top_k`
            highest scores. Ties are broken towards the lower class index.
        batch_size: samples per model call.

    Returns:
        The accuracy as a float in [0, 1].

    Raises:
        ValueError: when `x` and `y` differ in length, `top_k` is not in
            [1, num_classes], or the output has a single column (a sigmoid
            output: pass a callable returning two columns instead).
        TypeError: when `model` cannot be run.

    Example:

    ```python
    acc = tfcompress.evaluation.accuracy(model, x_test, y_test, top_k=5)
    ```
    """
    _runner.check_same_length(x, y)
    scores = _runner.predict(model, x, batch_size=batch_size)
    if scores.ndim < 2 or scores.shape[-1] < 2:
        raise ValueError(
            "`model` must output one score per class on its last axis (at least "
            f"2 classes). Received outputs of shape {scores.shape}. For a "
            "single sigmoid output, pass a callable returning "
            "`np.stack([1 - p, p], axis=-1)`."
        )
    num_classes = scores.shape[-1]
    top_k = checks.check_int(
        top_k,
        "top_k",
        1,
        num_classes,
        expected=f"an int in [1, {num_classes}] (the number of classes)",
    )
    labels = _runner.class_labels(y, scores)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"`y` must hold labels in [0, {num_classes}). Received labels in "
            f"[{labels.min()}, {labels.max()}]."
        )
    label_scores = np.take_along_axis(scores, labels[..., None], axis=-1)
    # Count classes that beat the label strictly, or tie it with a lower index,
    # so ties resolve the same way as argmax.
    above = np.sum(scores > label_scores, axis=-1)
    tied_before = np.sum(
        (scores == label_scores) & (np.arange(num_classes) < labels[..., None]),
        axis=-1,
    )
    return float(np.mean(above + tied_before < top_k))
