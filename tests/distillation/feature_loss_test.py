"""feature_loss: MSE and cosine distance per position, masked; relations; callables."""

import numpy as np
import pytest

from distillation.reference import numpy_relation
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
    assert float(feature_loss(teacher, student, "cosine", mask)) == pytest.approx(
        expected, abs=1e-6
    )
    assert float(feature_loss(teacher, 3.0 * teacher, "cosine")) == pytest.approx(0.0, abs=1e-6)


def test_token_mask_against_pooled_features_counts_rows():
    rng = np.random.default_rng(2)
    teacher, student = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    mask = np.array([[1, 0], [0, 0], [1, 1]], "float32")
    per = ((teacher - student) ** 2).mean(-1)
    assert float(feature_loss(teacher, student, "mse", mask)) == pytest.approx(
        (per[0] + per[2]) / 2, abs=1e-6
    )


def test_relation_compares_different_widths():
    teacher, _, mask = _data(3)
    student = np.random.default_rng(4).normal(size=(2, 5, 6)).astype("float32")
    expected = numpy_relation(teacher, student, mask)
    assert float(feature_loss(teacher, student, "relation", mask)) == pytest.approx(
        expected, abs=1e-6
    )


def test_a_callable_gets_the_activations_and_the_mask():
    teacher, student, mask = _data(5)
    seen = []

    def l1(t, s, m):
        seen.append(m)
        per = np.abs(np.asarray(t) - np.asarray(s)).sum(-1)
        return (per * m).sum() / m.sum()

    expected = (np.abs(teacher - student).sum(-1) * mask).sum() / mask.sum()
    value = feature_loss(teacher, student, l1, mask)
    assert value.dtype == "float32"
    assert float(value) == pytest.approx(expected, abs=1e-5)
    assert seen[0] is mask


def test_errors():
    with pytest.raises(
        ValueError, match=r"`loss` must be one of \['mse', 'cosine', 'relation'\] or a callable"
    ):
        feature_loss(np.zeros((2, 3)), np.zeros((2, 3)), "l1")

    def per_row(t, s, m):
        return t.sum(-1)

    with pytest.raises(
        ValueError, match=r"'per_row' returned shape \(2,\); it must return a scalar"
    ):
        feature_loss(np.zeros((2, 3)), np.zeros((2, 3)), per_row)
    with pytest.raises(ValueError, match="same shape.*teacher \\(2, 3\\) and student \\(2, 4\\)"):
        feature_loss(np.zeros((2, 3)), np.zeros((2, 4)))
