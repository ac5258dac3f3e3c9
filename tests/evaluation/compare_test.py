import json

import matplotlib
import numpy as np
import pytest

from tfcompress import evaluation

ENTRIES = [
    {
        "name": "fp32",
        "raw_bytes": 4_000_000,
        "gzip_bytes": 3_700_000,
        "latency_ms": 10.0,
        "accuracy": 0.92,
    },
    {
        "name": "int8",
        "raw_bytes": 1_000_000,
        "gzip_bytes": 900_000,
        "latency_ms": 4.0,
        "accuracy": 0.91,
    },
    {
        "name": "pruned 80%",
        "raw_bytes": 4_000_000,
        "gzip_bytes": 1_500_000,
        "latency_ms": 10.0,
        "accuracy": 0.915,
    },
    {
        "name": "bad",
        "raw_bytes": 2_000_000,
        "gzip_bytes": 2_000_000,
        "latency_ms": 12.0,
        "accuracy": 0.85,
    },
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_ratios_against_reference():
    result = evaluation.compare(ENTRIES)
    assert result.reference == "fp32"
    assert result.ratios("fp32") == {"raw_bytes": 1.0, "gzip_bytes": 1.0, "latency_ms": 1.0}
    assert result.ratios("int8") == pytest.approx(
        {"raw_bytes": 0.25, "gzip_bytes": 900 / 3700, "latency_ms": 0.4}
    )
    other = evaluation.compare(ENTRIES, reference="int8")
    assert other.ratios("fp32")["raw_bytes"] == pytest.approx(4.0)


def test_table_has_names_values_and_ratios():
    table = evaluation.compare(ENTRIES).table()
    lines = table.splitlines()
    assert lines[0].split() == [
        "name",
        "size",
        "size",
        "x",
        "gzip",
        "gzip",
        "x",
        "p50",
        "ms",
        "p50",
        "x",
        "accuracy",
    ]
    ref_row = next(line for line in lines if line.startswith("fp32"))
    assert "(ref)" in ref_row
    assert ref_row.count("1.00x") == 3
    assert "4.00 MB" in ref_row and "0.9200" in ref_row
    int8_row = next(line for line in lines if line.startswith("int8"))
    assert "0.25x" in int8_row and "0.40x" in int8_row and "0.24x" in int8_row
    assert any(line.startswith("pruned 80%") for line in lines)
    # Right-aligned columns: every row ends its accuracy cell under the header's.
    body = lines[2:6]
    assert {len(line) for line in body} == {len(lines[0])}
    assert "value / reference (fp32)" in lines[-1]


def test_table_drops_unmeasured_columns():
    table = evaluation.compare(
        [
            {"name": "a", "raw_bytes": 10, "cosine": 1.0},
            {"name": "b", "raw_bytes": 5, "cosine": 0.99},
        ]
    ).table()
    assert "gzip" not in table and "p50" not in table
    assert "0.50x" in table


def test_json_round_trip(tmp_path):
    result = evaluation.compare(ENTRIES, reference="int8")
    path = result.to_json(tmp_path / "cmp.json")
    with open(path) as f:
        data = json.load(f)
    assert data["reference"] == "int8"
    assert data["candidates"][0]["ratios"]["raw_bytes"] == pytest.approx(4.0)
    loaded = evaluation.Comparison.from_json(path)
    assert loaded.to_dict() == result.to_dict()
    assert loaded.candidates == result.candidates
    assert loaded.table() == result.table()


def test_entries_from_measurement_results(tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(bytes(2000))
    latency = evaluation.Latency(2.0, 3.0, 2.5, 10, 1, "xnnpack")
    cosine = evaluation.cosine_similarity(np.eye(3), np.eye(3))
    candidate = evaluation.Candidate.from_dict(
        {
            "name": "m",
            "size": evaluation.model_size(path),
            "latency": latency,
            "metrics": {"cosine": cosine},
            "agreement": np.float32(0.5),
        }
    )
    assert candidate.raw_bytes == 2000
    assert candidate.gzip_bytes < 100
    assert candidate.latency_ms == 2.0
    assert candidate.metrics == {"cosine": 1.0, "agreement": 0.5}
    assert evaluation.compare([candidate]).candidates == [candidate]


def test_frontier():
    result = evaluation.compare(ENTRIES)
    assert result.frontier() == ["fp32", "int8"]
    assert result.frontier(cost="gzip_bytes") == ["fp32", "int8", "pruned 80%"]
    assert result.frontier(cost="latency_ms") == ["fp32", "int8"]
    ppl = evaluation.compare(
        [
            {"name": "a", "raw_bytes": 10, "perplexity": 20.0},
            {"name": "b", "raw_bytes": 5, "perplexity": 25.0},
            {"name": "c", "raw_bytes": 8, "perplexity": 30.0},
        ]
    )
    assert ppl.frontier("perplexity") == ["a", "b"]
    custom = evaluation.compare(
        [{"name": "a", "raw_bytes": 10, "score": 1.0}, {"name": "b", "raw_bytes": 5, "score": 2.0}]
    )
    assert custom.frontier(higher_is_better=False) == ["a", "b"]
    assert custom.frontier(higher_is_better=True) == ["b"]


def test_nan_metric_counts_as_missing(tmp_path):
    entries = ENTRIES + [{"name": "broken", "raw_bytes": 10, "accuracy": float("nan")}]
    result = evaluation.compare(entries)
    assert result.frontier() == ["fp32", "int8"]
    assert "nan" in result.table()
    assert result.plot(tmp_path / "p.png").read_bytes().startswith(PNG_SIGNATURE)


def test_plot_writes_a_png_without_changing_matplotlib(tmp_path):
    backend = matplotlib.rcParams["backend"]
    entries = ENTRIES + [{"name": "no latency", "raw_bytes": 1_500_000, "accuracy": 0.9}]
    path = evaluation.compare(entries).plot(tmp_path / "pareto.png")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert 20_000 < len(data) < 1_000_000
    assert matplotlib.rcParams["backend"] == backend


def test_plot_without_latency_and_with_gzip_axis(tmp_path):
    entries = [{k: v for k, v in e.items() if k != "latency_ms"} for e in ENTRIES]
    path = evaluation.compare(entries).plot(str(tmp_path / "p.png"), size="gzip_bytes")
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_errors():
    with pytest.raises(ValueError, match="needs a `name`"):
        evaluation.compare([{"raw_bytes": 1}])
    with pytest.raises(ValueError, match="non-empty string `name`"):
        evaluation.compare([{"name": ""}])
    with pytest.raises(ValueError, match=r"unique\. Repeated: \['a'\]"):
        evaluation.compare([{"name": "a"}, {"name": "a"}])
    with pytest.raises(ValueError, match="`reference` must be the name of an entry"):
        evaluation.compare(ENTRIES, reference="fp16")
    with pytest.raises(ValueError, match="is empty"):
        evaluation.compare([])
    with pytest.raises(TypeError, match="wrap a single entry in a list"):
        evaluation.compare(ENTRIES[0])
    with pytest.raises(TypeError, match="must be a dict or a"):
        evaluation.compare(["fp32"])
    with pytest.raises(ValueError, match="metric 'notes' must be a number"):
        evaluation.compare([{"name": "a", "notes": "fast"}])
    with pytest.raises(ValueError, match="`raw_bytes` must be >= 0"):
        evaluation.compare([{"name": "a", "raw_bytes": -1}])
    result = evaluation.compare(ENTRIES)
    with pytest.raises(
        ValueError, match=r"Unknown metric 'acc'. Metrics in this comparison: \['accuracy'\]"
    ):
        result.plot("unused.png", metric="acc")
    with pytest.raises(ValueError, match="`size` must be"):
        result.plot("unused.png", size="bytes")
    with pytest.raises(ValueError, match="`cost` must be one of"):
        result.frontier(cost="flops")
    with pytest.raises(ValueError, match="higher_is_better"):
        evaluation.compare([{"name": "a", "raw_bytes": 1, "score": 1.0}]).frontier()
    with pytest.raises(KeyError, match="No candidate named 'x'"):
        result["x"]


def _digits_predictions():
    """Labels and the class scores of two models, one of which never predicts digit 9."""
    from tfcompress.cli.digits import load_digits

    _, _, _, y_test = load_digits(0)
    rng = np.random.default_rng(0)
    good = np.eye(10)[y_test] + rng.normal(scale=0.3, size=(len(y_test), 10))
    blind = good.copy()
    blind[:, 9] = -10.0  # the compressed model lost its last class
    return y_test, good, blind


def test_labels_add_accuracy_and_f1_columns():
    from sklearn import metrics

    y_test, good, blind = _digits_predictions()
    result = evaluation.compare(
        [
            {"name": "fp32", "raw_bytes": 4_000, "predictions": good},
            {"name": "int8", "raw_bytes": 1_000, "predictions": blind, "agreement": 0.9},
            {"name": "no predictions", "raw_bytes": 2_000},
        ],
        labels=y_test,
    )
    assert result.metric_names == ["accuracy", "f1", "agreement"]
    for name, scores in (("fp32", good), ("int8", blind)):
        predicted = scores.argmax(1)
        assert result[name].metrics["f1"] == pytest.approx(
            metrics.f1_score(y_test, predicted, average="macro")
        )
        assert result[name].metrics["accuracy"] == pytest.approx(
            metrics.accuracy_score(y_test, predicted)
        )
    # Losing one class of ten costs a tenth of accuracy, and more than that of macro F1.
    assert result["fp32"].metrics["f1"] - result["int8"].metrics["f1"] > 0.09
    assert result["no predictions"].metrics == {}
    header, _, *rows = result.table().splitlines()
    assert header.split()[-3:] == ["accuracy", "f1", "agreement"]
    assert rows[2].rstrip().endswith("-       -          -")
    assert all("predictions" not in entry for entry in result.to_dict()["candidates"])


def test_metrics_given_with_predictions_win():
    y_test, good, _ = _digits_predictions()
    result = evaluation.compare(
        [{"name": "a", "predictions": good, "accuracy": 0.5}], labels=y_test
    )
    assert result["a"].metrics["accuracy"] == 0.5
    assert 0.9 < result["a"].metrics["f1"] <= 1.0


def test_prediction_errors():
    y_test, good, _ = _digits_predictions()
    with pytest.raises(
        ValueError,
        match=r"Entry 'a' has `predictions` but `labels` is None\. Pass `compare\(entries, labels=y_test\)`",
    ):
        evaluation.compare([{"name": "a", "predictions": good}])
    with pytest.raises(ValueError, match=r"`labels` were given but no entry has `predictions`"):
        evaluation.compare(ENTRIES, labels=y_test)
    with pytest.raises(
        ValueError,
        match=r"Entry 'a': its `predictions` do not fit `labels`: `x` and `y` must have the same number",
    ):
        evaluation.compare([{"name": "a", "predictions": good[:10]}], labels=y_test)
    with pytest.raises(
        ValueError,
        match=r"Entry 'a': its `predictions` do not fit `labels`: `y` must hold labels in \[0, 10\)",
    ):
        evaluation.compare([{"name": "a", "predictions": good}], labels=y_test + 1)
