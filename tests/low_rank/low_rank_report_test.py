import keras
import numpy as np
import pytest

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


def _fine_tuned():
    """A factorized bias-free Dense, then trained away from its factorization."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((40,)), keras.layers.Dense(24, use_bias=False, name="d")])
    x = np.random.default_rng(0).normal(size=(256, 40)).astype("float32")
    small = factorize(model, rank=8, method="whitened", representative_data=x)
    recorded = small.get_layer("d").weight_error
    small.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    small.fit(x, np.zeros((256, 24), "float32"), epochs=3, verbose=0)
    return model, small, x, recorded


def test_recorded_errors_are_labelled_as_of_factorization():
    _, small, _, recorded = _fine_tuned()
    (row,) = low_rank_report(small).rows
    assert row["errors_from"] == "factorization" and row["weight_error"] == recorded
    assert "factorization" in low_rank_report(small).table()


def test_errors_are_remeasured_from_the_stored_factors_against_the_original():
    model, small, x, recorded = _fine_tuned()
    (row,) = low_rank_report(small, original=model, representative_data=x).rows
    kernel = model.get_layer("d").kernel.numpy().astype("float64")
    layer = small.get_layer("d")
    product = layer.first.kernel.numpy() @ layer.second.kernel.numpy()
    weight_error = np.linalg.norm(kernel - product) / np.linalg.norm(kernel)
    assert row["errors_from"] == "original"
    np.testing.assert_allclose(row["weight_error"], weight_error, rtol=1e-5)
    assert abs(row["weight_error"] - recorded) > 0.05
    reference = model(x).numpy()
    output_error = np.linalg.norm(reference - small(x).numpy()) / np.linalg.norm(reference)
    np.testing.assert_allclose(row["output_error"], output_error, rtol=1e-3)


def test_remeasuring_needs_the_original_model():
    model, small, x, _ = _fine_tuned()
    with pytest.raises(ValueError, match=r"pass `original` \(the model given to `factorize`\)"):
        low_rank_report(small, representative_data=x)
    other = keras.Sequential([keras.Input((40,)), keras.layers.Dense(24, name="e")])
    with pytest.raises(ValueError, match=r"`original` has no Dense/EinsumDense at \['d'\]"):
        low_rank_report(small, original=other)
    with pytest.raises(TypeError, match="original"):
        low_rank_report(small, original="model.keras")
