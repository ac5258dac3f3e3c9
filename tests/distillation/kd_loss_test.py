"""kd_loss against a numpy computation of T² · KL(softmax(t/T) ‖ softmax(s/T))."""

import keras
import numpy as np
import pytest

from distillation.reference import numpy_kd
from tfcompress.distillation import kd_loss


def test_llm_notes_case():
    value = kd_loss([[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]], temperature=2.0)
    assert float(value) == pytest.approx(1.2806, abs=1e-4)
    assert float(value) == pytest.approx(
        numpy_kd(np.array([[1, 2, 3]]), np.array([[3, 2, 1]]), 2.0), abs=1e-6
    )


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_token_logits_with_mask_match_numpy(temperature, reverse):
    rng = np.random.default_rng(0)
    teacher = rng.normal(scale=3, size=(3, 5, 11)).astype("float32")
    student = rng.normal(scale=3, size=(3, 5, 11)).astype("float32")
    mask = (rng.random((3, 5)) > 0.3).astype("float32")
    value = kd_loss(teacher, student, temperature, mask=mask, reverse=reverse)
    expected = numpy_kd(teacher, student, temperature, mask, reverse)
    # float32 arithmetic: 1e-6 relative (the values reach ~7).
    assert float(value) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_reverse_differs_from_forward():
    teacher, student = [[0.0, 4.0, 0.0]], [[2.0, 1.0, 0.0]]
    forward = float(kd_loss(teacher, student, 1.0))
    reverse = float(kd_loss(teacher, student, 1.0, reverse=True))
    assert forward != pytest.approx(reverse, abs=1e-3)
    assert reverse == pytest.approx(
        numpy_kd(np.array(teacher), np.array(student), 1.0, reverse=True), abs=1e-6
    )


def test_padded_batch_gives_the_loss_of_its_real_tokens():
    rng = np.random.default_rng(1)
    teacher = rng.normal(size=(2, 6, 7)).astype("float32")
    student = rng.normal(size=(2, 6, 7)).astype("float32")
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], "float32")
    padded = float(kd_loss(teacher, student, 2.0, mask=mask))
    real_t = np.concatenate([teacher[0, :4], teacher[1, :2]])
    real_s = np.concatenate([student[0, :4], student[1, :2]])
    assert padded == pytest.approx(float(kd_loss(real_t, real_s, 2.0)), abs=1e-6)


def test_per_example_weights_on_classifier_logits():
    teacher = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0]])
    student = np.array([[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    value = kd_loss(teacher, student, 2.0, mask=np.array([1.0, 0.0]))
    assert float(value) == pytest.approx(1.2806, abs=1e-4)


def test_zero_for_identical_logits_and_for_an_all_padding_batch():
    logits = np.random.default_rng(2).normal(size=(4, 9)).astype("float32")
    assert float(kd_loss(logits, logits, 3.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(logits, -logits, 3.0, mask=np.zeros(4))) == 0.0


def test_float16_and_huge_logits_stay_finite_and_exact():
    teacher = np.array([[1000.0, 0.0, -1000.0]], "float32")
    student = np.array([[0.0, 1000.0, 0.0]], "float32")
    value = kd_loss(teacher.astype("float16"), student.astype("float16"), 1.0)
    assert np.isfinite(float(value))
    assert float(value) == pytest.approx(numpy_kd(teacher, student, 1.0), rel=1e-5)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), "2", True])
def test_bad_temperature(temperature):
    with pytest.raises(ValueError, match="`temperature` must be a finite number > 0"):
        kd_loss([[1.0, 2.0]], [[2.0, 1.0]], temperature)


def test_vocabulary_mismatch():
    with pytest.raises(ValueError, match="teacher has 5, student has 4.*vocabulary_size=5"):
        kd_loss(np.zeros((2, 3, 5)), np.zeros((2, 3, 4)))
