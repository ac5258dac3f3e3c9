import numpy as np
import pytest

from tfcompress import evaluation


def test_agreement_counts_equal_argmax():
    a = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    b = np.array([[5.0, 1.0], [1.0, 0.0], [9.0, 1.0], [0.1, 0.2]])
    assert evaluation.agreement(a, b) == pytest.approx(0.75)
    assert evaluation.agreement(a, a) == 1.0


def test_mask_selects_positions():
    a = np.zeros((2, 3, 5))
    b = np.zeros((2, 3, 5))
    b[0, 2, 4] = 1.0  # disagrees at a padded position only
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    assert evaluation.agreement(a, b) == pytest.approx(5 / 6)
    assert evaluation.agreement(a, b, mask=mask) == 1.0


def test_errors():
    with pytest.raises(ValueError, match=r"a.shape=\(2, 3\), b.shape=\(2, 4\)"):
        evaluation.agreement(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`mask` must have shape"):
        evaluation.agreement(np.zeros((2, 3)), np.zeros((2, 3)), mask=np.ones(3))
    with pytest.raises(ValueError, match="all zeros"):
        evaluation.agreement(np.zeros((2, 3)), np.zeros((2, 3)), mask=np.zeros(2))
