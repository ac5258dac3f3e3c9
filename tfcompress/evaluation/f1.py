"""F1 score (macro, micro or per class) of a Keras model, a LiteRT model or a callable."""

import numpy as np

from tfcompress.evaluation import _runner

_AVERAGES = ("macro", "micro", None)


def _multi_hot(y, scores):
    y = np.asarray(y)
    if y.shape != scores.shape:
        raise ValueError(
            "With `multi_label=True`, `y` must be a 0/1 matrix shaped like the "
            f"model's output {scores.shape}. Received: y.shape={y.shape}."
        )
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(
            "With `multi_label=True`, `y` must hold only 0 and 1. Received values "
            f"such as {np.unique(y)[:5].tolist()}."
        )
    return y.astype(bool)


def _one_hot(indices, num_classes):
    return np.eye(num_classes, dtype=bool)[indices.reshape(-1)]


def scores_f1(scores, y, average="macro", multi_label=False, threshold=0.5):
    """F1 of class `scores` (a numpy array, classes on the last axis) against `y`.

    The body of `f1` once the model ran; `compare` calls it on predictions.
    Arguments and errors as `f1`.
    """
    if average not in _AVERAGES:
        raise ValueError(
            f"`average` must be 'macro', 'micro' or None (per class). Received: average={average!r}."
        )
    scores = np.asarray(scores)
    if scores.ndim < 2 or scores.shape[-1] < 2:
        raise ValueError(
            "`model` must output one score per class on its last axis (at least "
            f"2 classes). Received outputs of shape {scores.shape}."
        )
    num_classes = scores.shape[-1]
    if multi_label:
        truth = _multi_hot(y, scores).reshape(-1, num_classes)
        predicted = scores.reshape(-1, num_classes) > threshold
    else:
        labels = _runner.class_labels(y, scores)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"`y` must hold labels in [0, {num_classes}). Received labels in "
                f"[{labels.min()}, {labels.max()}]."
            )
        truth = _one_hot(labels, num_classes)
        predicted = _one_hot(np.argmax(scores, axis=-1), num_classes)
    true_positives = np.sum(truth & predicted, axis=0)
    wrong = np.sum(truth != predicted, axis=0)  # false positives + false negatives
    if average == "micro":
        pooled = 2 * true_positives.sum() + wrong.sum()
        return float(2 * true_positives.sum() / pooled) if pooled else 0.0
    denominator = 2 * true_positives + wrong
    per_class = np.divide(
        2 * true_positives, denominator, out=np.zeros(num_classes), where=denominator > 0
    )
    if average is None:
        return per_class
    # As scikit-learn: single-label macro F1 averages the classes that occur
    # in the labels or the predictions; multi-label averages every column.
    seen = np.ones(num_classes, bool) if multi_label else denominator > 0
    return float(np.mean(per_class[seen]))


def f1(model, x, y, average="macro", multi_label=False, threshold=0.5, batch_size=32):
    """F1 score of a classifier: macro (default), micro or per class.

    Counts are those of `sklearn.metrics.f1_score`, and so are the results.
    For an intent classifier with rare intents, macro F1 shows what accuracy
    hides: a compressed model that stops predicting a rare class.

    Args:
        model: a `keras.Model`, a loaded LiteRT model (anything with
            `.run(inputs)`, e.g. `tfcompress.runtime.load(path)`), or a
            callable mapping a batch of `x` to scores, one per class on the
            last axis.
        x: the inputs: an array, or a list/dict of arrays for multi-input
            models, with the samples on the first axis.
        y: integer labels shaped like the output without its class axis, or
            one-hot labels shaped like the output. With `multi_label`, a 0/1
            matrix shaped like the output (several ones per row allowed).
        average: `"macro"`: the unweighted mean of the per-class F1 (over
            the classes that occur in `y` or in the predictions; with
            `multi_label`, over every class). `"micro"`: F1 of the true
            positives, false positives and false negatives pooled over
            classes (for single-label data it equals the accuracy). None:
            the F1 of every class, as an array of `num_classes` floats (0.0
            for a class neither in `y` nor predicted).
        multi_label: every output column is an independent yes/no (sigmoid
            outputs); a class is predicted where its score exceeds
            `threshold`. Otherwise the prediction is the argmax.
        threshold: with `multi_label`, the score above which a class is
            predicted: 0.5 for probabilities, 0.0 for logits.
        batch_size: samples per model call.

    Returns:
        The F1 score as a float in [0, 1], or a numpy array of per-class
        scores for `average=None`.

    Raises:
        ValueError: for an unknown `average`, `x` and `y` of different
            lengths, labels out of range, a multi-label `y` that is not a 0/1
            matrix shaped like the output, or an output with a single column.
        TypeError: when `model` cannot be run.

    Example:

    ```python
    macro = tfcompress.evaluation.f1(model, x_test, y_test)
    per_intent = tfcompress.evaluation.f1(int8_model, x_test, y_test, average=None)
    tags = tfcompress.evaluation.f1(tagger, x, y_multi_hot, average="micro", multi_label=True)
    ```
    """
    if average not in _AVERAGES:
        raise ValueError(
            f"`average` must be 'macro', 'micro' or None (per class). Received: average={average!r}."
        )
    _runner.check_same_length(x, y)
    scores = _runner.predict(model, x, batch_size=batch_size)
    return scores_f1(scores, y, average, multi_label, threshold)
