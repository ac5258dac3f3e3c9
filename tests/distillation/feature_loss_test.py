"""feature_loss: MSE and cosine distance per position, masked."""

import numpy as np
import pytest

from tfcompress.distillation import feature_loss


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(2, 5, 4)).astype("float32"),
        rng.normal(size=(2, 5, 4)).astype("float32"),
        np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32"),
    )


def test_mse_matches_numpy_over_real_positions():
    teacher, student, mask = _data()
    per = ((teacher - student) ** 2).mean(-1)
    expected = (per * mask).sum() / mask.sum()
    assert float(feature_loss(teacher, student, "mse", mask)) == pytest.approx(expected, abs=1e-6)
    assert float(feature_loss(teacher, student, "mse")) == pytest.approx(per.mean(), abs=1e-6)


def test_cosine_matches_numpy_and_ignores_scale():
    teacher, student, mask = _data(1)
    cos = (teacher * student).sum(-1) / (
        np.linalg.norm(teacher, axis=-1) * np.linalg.norm(student, axis=-1)
    )
    expected = ((1 - cos) * mask).sum() / mask.sum()
    assert float(feature_loss(teacher, student, "cosine", mask)) == pytest.approx(expected, abs=1e-6)
    assert float(feature_loss(teacher, 3.0 * teacher, "cosine")) == pytest.approx(0.0, abs=1e-6)


def test_token_mask_against_pooled_features_counts_rows():
    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    mask = np.array([[1, 0], [0, 0], [1, 1]], "float32")
    per = ((teacher - student) ** 2).mean(-1)
    assert float(feature_loss(teacher, student, "mse", mask)) == pytest.approx(
        (per[0] + per[2]) / 2, abs=1e-6
    )


def test_errors():
    with pytest.raises(ValueError, match=r"`loss` must be one of \['mse', 'cosine'\]"):
        feature_loss(np.zeros((2, 3)), np.zeros((2, 3)), "l1")
    with pytest.raises(ValueError, match="same shape.*teacher \\(2, 3\\) and student \\(2, 4\\)"):
        feature_loss(np.zeros((2, 3)), np.zeros((2, 4)))
