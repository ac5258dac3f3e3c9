import numpy as np
import pytest

from tfcompress.runtime import Sampler


def test_greedy_is_arg_max():
    assert Sampler()(np.array([0.1, 3.0, 2.9])) == 1
    assert Sampler(temperature=1.0, top_k=1)(np.array([[5.0, 1.0, 7.0]])) == 2


def test_same_seed_same_draws_other_seed_other_draws():
    logits = np.random.default_rng(0).normal(size=50)
    draws = lambda seed: (
        [Sampler(temperature=1.0, seed=seed)(logits) for _ in range(1)]
        + [s(logits) for s in [Sampler(temperature=1.0, seed=seed)] for _ in range(30)]
    )
    assert draws(3) == draws(3)
    assert draws(3) != draws(4)


def test_top_k_and_top_p_cut_the_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    np.testing.assert_allclose(
        Sampler(temperature=1.0).probabilities(logits), [0.5, 0.3, 0.15, 0.05]
    )
    np.testing.assert_allclose(
        Sampler(temperature=1.0, top_k=2).probabilities(logits), [0.625, 0.375, 0, 0]
    )
    np.testing.assert_allclose(
        Sampler(temperature=1.0, top_p=0.8).probabilities(logits), [0.625, 0.375, 0, 0]
    )
    np.testing.assert_allclose(
        Sampler(temperature=1.0, top_p=0.81).probabilities(logits),
        [0.5, 0.3, 0.15, 0] / np.float64(0.95),
    )
    np.testing.assert_allclose(
        Sampler(temperature=1.0, top_p=0.1).probabilities(logits), [1, 0, 0, 0]
    )
    sampler = Sampler(temperature=1.0, top_k=2, seed=0)
    assert {sampler(logits) for _ in range(200)} == {0, 1}


def test_temperature_sharpens():
    logits = np.array([1.0, 0.0])
    hot, cold = (
        Sampler(temperature=2.0).probabilities(logits),
        Sampler(temperature=0.5).probabilities(logits),
    )
    np.testing.assert_allclose(hot[0], 1 / (1 + np.exp(-0.5)))
    np.testing.assert_allclose(cold[0], 1 / (1 + np.exp(-2.0)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_k": 1.5}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.2}, "top_p"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Sampler(**kwargs)
