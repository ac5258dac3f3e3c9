import keras
import numpy as np

from tfcompress.low_rank import factorize, low_rank_report


def test_rows_count_parameters_and_errors():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(24, name="d")])
    x = np.random.default_rng(0).normal(size=(64, 40)).astype("float32")
    report = low_rank_report(factorize(model, rank=8, method="whitened", representative_data=x))
    (row,) = report.rows
    assert row["path"] == "d" and row["class"] == "LowRankDense"
    assert row["shape"] == [40, 24] and row["rank"] == 8
    assert row["params_before"] == 40 * 24 + 24
    assert row["params_after"] == 8 * 64 + 24
    assert 0 < row["output_error"] < 1 and 0 < row["weight_error"]
    text = report.table()
    assert "total (1 layers)" in text and "LowRankDense" in text and "0.545" in text


def test_unfactorized_model_has_no_rows():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    report = low_rank_report(model)
    assert report.rows == [] and report.params_before == 0
