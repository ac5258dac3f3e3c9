import numpy as np
import pytest

from tfcompress import evaluation


def test_identical_rows_score_one_and_orthogonal_zero():
    a = np.random.default_rng(0).normal(size=(6, 16))
    same = evaluation.cosine_similarity(a, a)
    np.testing.assert_allclose(same.per_row, 1.0, atol=1e-12)
    assert same.mean == pytest.approx(1.0)
    assert same.min == pytest.approx(1.0)
    ortho = evaluation.cosine_similarity(np.eye(4), np.roll(np.eye(4), 1, axis=1))
    np.testing.assert_allclose(ortho.per_row, 0.0)


def test_per_row_values_mean_and_min():
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = np.array([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0], [3.0, 4.0]])
    result = evaluation.cosine_similarity(a, b)
    expected = [1.0, np.sqrt(0.5), -1.0, 1.0]
    np.testing.assert_allclose(result.per_row, expected)
    assert result.mean == pytest.approx(np.mean(expected))
    assert result.min == pytest.approx(-1.0)
    assert float(result) == result.mean
    assert result.as_dict() == {"mean": result.mean, "min": -1.0, "rows": 4}


def test_zero_rows_and_vectors():
    result = evaluation.cosine_similarity(np.zeros((2, 3)), np.array([[0, 0, 0], [1, 0, 0]]))
    np.testing.assert_allclose(result.per_row, [1.0, 0.0])
    single = evaluation.cosine_similarity([1.0, 2.0], [2.0, 4.0])
    assert single.per_row.shape == (1,)
    assert single.mean == pytest.approx(1.0)


def test_trailing_axes_are_flattened_per_row():
    a = np.random.default_rng(1).normal(size=(3, 4, 5))
    b = a.copy()
    b[1] *= -1
    np.testing.assert_allclose(evaluation.cosine_similarity(a, b).per_row, [1, -1, 1])


def test_mean_pooled_cosine_ignores_padding():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 5, 8))
    b = a.copy()
    b[:, 3:] = rng.normal(size=(3, 2, 8)) * 100  # only padded positions differ
    mask = np.array([[1, 1, 1, 0, 0]] * 3)
    pooled = evaluation.mean_pooled_cosine(a, b, mask=mask)
    np.testing.assert_allclose(pooled.per_row, 1.0, atol=1e-12)
    assert evaluation.mean_pooled_cosine(a, b).mean < 0.9


def test_mean_pooled_cosine_matches_manual_pooling():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 4, 6)), rng.normal(size=(2, 4, 6))
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    pa = np.stack([a[0, :2].mean(0), a[1].mean(0)])
    pb = np.stack([b[0, :2].mean(0), b[1].mean(0)])
    expected = np.sum(pa * pb, 1) / np.linalg.norm(pa, axis=1) / np.linalg.norm(pb, axis=1)
    result = evaluation.mean_pooled_cosine(a, b, mask)
    np.testing.assert_allclose(result.per_row, expected)


def test_errors():
    with pytest.raises(ValueError, match=r"a.shape=\(2, 3\), b.shape=\(3, 3\)"):
        evaluation.cosine_similarity(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"\[batch, seq, dim\]"):
        evaluation.mean_pooled_cosine(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"no real token in rows \[1\]"):
        evaluation.mean_pooled_cosine(
            np.ones((2, 3, 4)), np.ones((2, 3, 4)), mask=[[1, 0, 0], [0, 0, 0]]
        )
    with pytest.raises(ValueError, match="`mask` must have shape"):
        evaluation.mean_pooled_cosine(np.ones((2, 3, 4)), np.ones((2, 3, 4)), mask=np.ones(3))
