import numpy as np
import pytest

from tfcompress.low_rank._factors import Spectrum, allocate_ranks


def _layers():
    """A nearly rank-4 64x64 kernel (cheap to cut) and three full-rank ones."""
    rng = np.random.default_rng(0)
    easy = rng.normal(size=(64, 4)) @ rng.normal(size=(4, 64)) + 0.01 * rng.normal(size=(64, 64))
    kernels = {"easy": easy} | {f"hard{i}": rng.normal(size=(64, 64)) for i in range(3)}
    return {key: ((64, 64), 64, Spectrum(k).discarded) for key, k in kernels.items()}


def _kept(layers, ranks):
    return {
        key: (m * n if ranks[key] is None else ranks[key] * (m + n)) + bias
        for key, ((m, n), bias, _) in layers.items()
    }


@pytest.mark.parametrize("spread", [0.0, 0.5, 0.75, 1.0])
def test_budget_met_within_one_rounding_step(spread):
    layers = _layers()
    kept = _kept(layers, allocate_ranks(layers, 0.6, 8, spread=spread))
    total = 4 * (64 * 64 + 64)
    assert 0.6 * total - 8 * 128 < sum(kept.values()) <= 0.6 * total


def test_plain_greedy_puts_the_cut_where_the_error_is_lowest():
    layers = _layers()
    ranks = allocate_ranks(layers, 0.7, 8, spread=0.0)
    assert ranks["easy"] == 8
    assert ranks["easy"] < min(r or 64 for k, r in ranks.items() if k != "easy")


def test_spread_keeps_every_layer_above_its_floor():
    layers = _layers()
    ranks = allocate_ranks(layers, 0.7, 8)
    kept = _kept(layers, ranks)
    floor = 0.75 * 0.7 * (64 * 64 + 64)
    assert all(count > floor - 8 * 128 for count in kept.values()), kept
    # The cheap layer still takes the largest share of the cut.
    assert ranks["easy"] == min(r for r in ranks.values() if r is not None)


def test_full_spread_gives_even_ranks():
    layers = _layers()
    ranks = allocate_ranks(layers, 0.6, 8, spread=1.0)
    assert max(ranks.values()) - min(ranks.values()) <= 8, ranks


def test_spread_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match=r"`spread` must be in \[0, 1\]. Received: spread=1.5"):
        allocate_ranks(_layers(), 0.7, 8, spread=1.5)
