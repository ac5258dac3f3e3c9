"""Side-by-side comparison of model variants against a reference."""

import json
import math

import numpy as np

from tfcompress.evaluation import _pareto, _plot, _runner, _table
from tfcompress.evaluation.candidate import Candidate
from tfcompress.evaluation.f1 import scores_f1

_COSTS = ("raw_bytes", "gzip_bytes", "latency_ms")
_RATIO_HEADERS = {"raw_bytes": "size x", "gzip_bytes": "gzip x", "latency_ms": "p50 x"}
_VALUE_HEADERS = {"raw_bytes": "size", "gzip_bytes": "gzip", "latency_ms": "p50 ms"}


class Comparison:
    """Candidates measured the same way, with ratios against a reference.

    Build it with `tfcompress.evaluation.compare`. Ratios are
    `candidate / reference`, so below 1.00x means smaller or faster.

    Attributes:
        candidates: the `Candidate`s, in the order given.
        reference: the name of the reference candidate.
    """

    def __init__(self, candidates, reference):
        self.candidates = list(candidates)
        self.reference = reference

    def __getitem__(self, name):
        for candidate in self.candidates:
            if candidate.name == name:
                return candidate
        raise KeyError(f"No candidate named {name!r}. Names: {[c.name for c in self.candidates]}.")

    @property
    def metric_names(self):
        """Every metric any candidate has, in first-seen order."""
        names = {}
        for candidate in self.candidates:
            names.update(dict.fromkeys(candidate.metrics))
        return list(names)

    def ratios(self, name):
        """`{cost: candidate / reference}` for size, gzip size and latency (None if unknown)."""
        candidate, reference = self[name], self[self.reference]
        out = {}
        for key in _COSTS:
            value, ref = getattr(candidate, key), getattr(reference, key)
            out[key] = value / ref if value is not None and ref else None
        return out

    def table(self):
        """An aligned plain-text table with ratio columns against the reference."""
        costs = [k for k in _COSTS if any(getattr(c, k) is not None for c in self.candidates)]
        headers = ["name"]
        for key in costs:
            headers += [_VALUE_HEADERS[key], _RATIO_HEADERS[key]]
        headers += self.metric_names
        rows = []
        for candidate in self.candidates:
            ratios = self.ratios(candidate.name)
            is_ref = candidate.name == self.reference
            row = [candidate.name + (" (ref)" if is_ref else "")]
            for key in costs:
                value = getattr(candidate, key)
                shown = (
                    _table.format_ms(value) if key == "latency_ms" else (_table.format_bytes(value))
                )
                row += [shown, _table.format_ratio(ratios[key])]
            row += [_table.format_number(candidate.metrics.get(m)) for m in self.metric_names]
            rows.append(row)
        note = f"x columns: value / reference ({self.reference}); below 1.00x is smaller or faster."
        return _table.format_table(headers, rows) + "\n" + note

    def __str__(self):
        return self.table()

    def to_dict(self):
        """A JSON-ready dict; `Comparison.from_dict` rebuilds an equal comparison."""
        return {
            "reference": self.reference,
            "candidates": [dict(c.to_dict(), ratios=self.ratios(c.name)) for c in self.candidates],
        }

    @classmethod
    def from_dict(cls, data):
        """Rebuilds a comparison from `to_dict()` output (ratios are recomputed)."""
        entries = []
        for entry in data["candidates"]:
            entry = dict(entry)
            entry.pop("ratios", None)
            entries.append(entry)
        return compare(entries, reference=data["reference"])

    def to_json(self, path):
        """Writes `to_dict()` to `path` as indented JSON and returns `path`."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
        return path

    @classmethod
    def from_json(cls, path):
        """Reads a comparison written by `to_json`."""
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))

    def _metric(self, metric):
        available = self.metric_names
        if metric is None:
            if not available:
                raise ValueError("No candidate has a quality metric to plot against.")
            return available[0]
        if metric not in available:
            raise ValueError(f"Unknown metric {metric!r}. Metrics in this comparison: {available}.")
        return metric

    def _points(self, metric, cost, higher):
        """`(name, cost, score, on_frontier)` of candidates with both numbers finite."""
        measured = [(c.name, getattr(c, cost), c.metrics.get(metric)) for c in self.candidates]
        measured = [
            point
            for point in measured
            if point[1] is not None and point[2] is not None and math.isfinite(point[2])
        ]
        flags = _pareto.pareto_front(
            [cost for _, cost, _ in measured],
            [score if higher else -score for _, _, score in measured],
        )
        return [(*point, on) for point, on in zip(measured, flags)]

    def frontier(self, metric=None, cost="raw_bytes", higher_is_better=None):
        """Names of the candidates on the Pareto frontier of `cost` against `metric`.

        Args:
            metric: a metric name; defaults to the first one.
            cost: `"raw_bytes"`, `"gzip_bytes"` or `"latency_ms"`.
            higher_is_better: the metric's direction, if its name does not say.

        Returns:
            Names, in candidate order, of those that have both numbers (a NaN
            metric counts as missing) and that no other candidate beats on both.

        Raises:
            ValueError: for an unknown metric or cost, or a metric whose
                direction is unknown and not given.
        """
        if cost not in _COSTS:
            raise ValueError(f"`cost` must be one of {_COSTS}. Received: cost={cost!r}.")
        metric = self._metric(metric)
        higher = _pareto.metric_direction(metric, higher_is_better)
        return [name for name, _, _, on in self._points(metric, cost, higher) if on]

    def plot(self, path, metric=None, size="raw_bytes", higher_is_better=None):
        """Writes a PNG: `size` vs `metric` and p50 latency vs `metric`.

        The Pareto frontier is drawn as a line through blue points, dominated
        candidates are grey, the reference is a star, every point is labelled.
        matplotlib is imported here and draws without pyplot, so no global
        backend changes.

        Args:
            path: where to write the PNG.
            metric: the quality metric on the y axes; defaults to the first.
            size: `"raw_bytes"` or `"gzip_bytes"` for the left panel.
            higher_is_better: the metric's direction, if its name does not say.

        Returns:
            `path`.

        Raises:
            ValueError: for an unknown metric or size, or a metric whose
                direction is unknown and not given.
        """
        if size not in ("raw_bytes", "gzip_bytes"):
            raise ValueError(
                f"`size` must be 'raw_bytes' or 'gzip_bytes'. Received: size={size!r}."
            )
        metric = self._metric(metric)
        higher = _pareto.metric_direction(metric, higher_is_better)
        panels = [(cost, self._points(metric, cost, higher)) for cost in (size, "latency_ms")]
        return _plot.plot_panels(path, panels, metric, higher, self.reference)


def _scored(candidate, scores, labels):
    """`candidate` with `accuracy` and macro `f1` of `scores` added (given metrics win)."""
    try:
        scores = np.asarray(scores)
        _runner.check_same_length(scores, labels)
        f1 = scores_f1(scores, labels)
        accuracy = float(
            np.mean(np.argmax(scores, axis=-1) == _runner.class_labels(labels, scores))
        )
    except ValueError as error:
        raise ValueError(
            f"Entry {candidate.name!r}: its `predictions` do not fit `labels`: {error}"
        ) from None
    candidate.metrics = {"accuracy": accuracy, "f1": f1, **candidate.metrics}
    return candidate


def _candidates(entries, labels):
    candidates, scored = [], []
    for entry in entries:
        scores = None
        if isinstance(entry, dict) and "predictions" in entry:
            entry = dict(entry)
            scores = entry.pop("predictions")
        candidate = entry if isinstance(entry, Candidate) else Candidate.from_dict(entry)
        if scores is not None:
            if labels is None:
                raise ValueError(
                    f"Entry {candidate.name!r} has `predictions` but `labels` is None. Pass "
                    "`compare(entries, labels=y_test)` to score them, or leave `predictions` out."
                )
            candidate = _scored(candidate, scores, labels)
            scored.append(candidate.name)
        candidates.append(candidate)
    if labels is not None and not scored:
        raise ValueError(
            "`labels` were given but no entry has `predictions` to score. Add each model's class "
            "scores on the labelled inputs, e.g. {'name': 'int8', 'predictions': model.run(x_test)}."
        )
    return candidates


def compare(entries, reference=None, labels=None):
    """Collects measured model variants into a `Comparison`.

    Args:
        entries: a list of `Candidate`s or dicts such as
            `{"name": "int8", "size": model_size(path), "latency": lat,
            "accuracy": 0.91}` (see `Candidate.from_dict`). With `labels`, a
            dict may carry `"predictions"`: the model's class scores on the
            labelled inputs, shape `[num_samples, num_classes]`.
        reference: the name of the entry ratios are taken against; defaults
            to the first entry.
        labels: integer (or one-hot) labels of the inputs the `predictions`
            were made on. Each entry with `predictions` then gets an
            `accuracy` and an `f1` (macro, see `tfcompress.evaluation.f1`)
            column; metrics the entry gives itself win. The predictions are
            not kept, so `to_json` stays small.

    Returns:
        A `Comparison` with `table()`, `to_dict()`, `to_json(path)`,
        `plot(path)` and `frontier()`.

    Raises:
        ValueError: for no entries, an entry without a name, duplicate names,
            a non-numeric field, an unknown reference, `predictions` without
            `labels` (or the reverse), or predictions that do not fit them.
        TypeError: for an entry that is neither a dict nor a `Candidate`.

    Example:

    ```python
    result = tfcompress.evaluation.compare([
        {"name": "fp32", "size": tfcompress.evaluation.model_size("fp32.tflite"),
         "latency": tfcompress.evaluation.latency("fp32.tflite", x[:1]),
         "accuracy": 0.912},
        {"name": "int8", "raw_bytes": 25_000, "latency_ms": 0.4, "accuracy": 0.905},
    ])
    print(result.table())
    result.plot("pareto.png")

    # accuracy and F1 columns from each model's scores on labelled data:
    tfcompress.evaluation.compare([
        {"name": "fp32", "raw_bytes": 4_000_000, "predictions": model.predict(x_test)},
        {"name": "int8", "raw_bytes": 1_000_000, "predictions": int8.run(x_test)},
    ], labels=y_test)
    ```
    """
    if isinstance(entries, (dict, Candidate)) or not hasattr(entries, "__iter__"):
        raise TypeError(
            "`entries` must be a list of dicts or `Candidate`s. Received: "
            f"{type(entries).__name__}; wrap a single entry in a list."
        )
    candidates = _candidates(entries, labels)
    if not candidates:
        raise ValueError("`entries` is empty: pass at least one candidate.")
    names = [c.name for c in candidates]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"Entry names must be unique. Repeated: {duplicates}.")
    if reference is None:
        reference = names[0]
    elif reference not in names:
        raise ValueError(
            f"`reference` must be the name of an entry. Received: "
            f"reference={reference!r}; names: {names}."
        )
    return Comparison(candidates, reference)
