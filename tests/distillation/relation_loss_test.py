"""relation_loss: MiniLMv2 self-attention relations, heads split, padded keys removed."""

import numpy as np
import pytest

from distillation.reference import numpy_relation
from tfcompress.distillation import relation_loss


def _mask():
    return np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], "float32")


def test_attention_projections_match_numpy_with_a_padding_mask():
    rng = np.random.default_rng(0)
    # (batch, seq, heads, head_dim), as a keras-hub EinsumDense query returns.
    teacher = rng.normal(size=(2, 5, 3, 4)).astype("float32")
    student = rng.normal(size=(2, 5, 3, 2)).astype("float32")
    expected = numpy_relation(teacher, student, _mask())
    assert float(relation_loss(teacher, student, _mask())) == pytest.approx(expected, abs=1e-6)
    unmasked = numpy_relation(teacher, student)
    assert float(relation_loss(teacher, student)) == pytest.approx(unmasked, abs=1e-6)
    assert abs(expected - unmasked) > 1e-3


def test_relation_heads_resplit_both_widths():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(2, 5, 12)).astype("float32")
    student = rng.normal(size=(2, 5, 2, 3)).astype("float32")
    for heads in (1, 2, 6):
        expected = numpy_relation(teacher, student.reshape(2, 5, 6), _mask(), num_heads=heads)
        value = float(relation_loss(teacher, student, _mask(), num_heads=heads))
        assert value == pytest.approx(expected, abs=1e-6), heads


def test_equal_relations_give_zero_and_padded_values_do_not_count():
    rng = np.random.default_rng(2)
    teacher = rng.normal(size=(2, 5, 8)).astype("float32")
    assert float(relation_loss(teacher, teacher, _mask())) == pytest.approx(0.0, abs=1e-6)
    student = teacher.copy()
    student[0, 3:] = rng.normal(size=(2, 8))
    assert float(relation_loss(teacher, student, _mask(), num_heads=2)) == pytest.approx(
        0.0, abs=1e-6
    )
    assert float(relation_loss(teacher, student, num_heads=2)) > 1e-3


def test_errors():
    with pytest.raises(ValueError, match=r"student's activations have width 6.*num_heads=4"):
        relation_loss(np.zeros((2, 5, 8)), np.zeros((2, 5, 6)), num_heads=4)
    with pytest.raises(
        ValueError, match=r"same batch and length.*teacher \(2, 5, 8\) and student \(2, 4, 8\)"
    ):
        relation_loss(np.zeros((2, 5, 8)), np.zeros((2, 4, 8)))
    with pytest.raises(ValueError, match=r"\(batch, seq, \.\.\.\)"):
        relation_loss(np.zeros((2, 8)), np.zeros((2, 8)))
