import numpy as np
import pytest

from tests.sparsity.structured_reconstruct_test import _bert, _tokens
from tfcompress.sparsity.structured_groups import transformer_groups
from tfcompress.sparsity.structured_scores import gradient_statistics, unit_scores


def _removal_effects(model, data):
    """Per FFN channel of the first block: squared output change at real tokens when
    that channel alone is zeroed."""
    out = next(
        w for w in model.weights if w.path == "transformer_layer_0/feedforward_output_dense/kernel"
    )
    saved = out.numpy()
    reference = [np.asarray(model(x)["sequence_output"]) for x in data]
    effects = []
    for channel in range(saved.shape[0]):
        value = saved.copy()
        value[channel] = 0
        out.assign(value)
        effects.append(
            sum(
                float(
                    np.sum(
                        np.square(np.asarray(model(x)["sequence_output"]) - r)[
                            x["padding_mask"] > 0
                        ]
                    )
                )
                for x, r in zip(data, reference)
            )
        )
    out.assign(saved)
    return np.array(effects)


def _rank_correlation(a, b):
    ranks = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


# Slow tier: 14 s on a 2-core CI machine.
@pytest.mark.slow
def test_fisher_ranks_channels_by_how_much_removing_them_moves_the_outputs():
    model = _bert()
    data = [_tokens(model, seed=s) for s in range(24)]
    effects = _removal_effects(model, data[:4])
    groups = [g for g in transformer_groups(model)["ffn"] if g.path == "transformer_layer_0"]
    correlation = {}
    for criterion in ("fisher", "taylor"):
        statistics = gradient_statistics(model, groups, data, criterion=criterion)
        correlation[criterion] = _rank_correlation(
            unit_scores(groups[0], criterion, statistics), effects
        )
    assert correlation["fisher"] > 0.6
    assert correlation["fisher"] > correlation["taylor"] + 0.1, correlation


def test_random_scores_differ_between_layers_and_repeat_for_a_seed():
    model = _bert()
    first, second = transformer_groups(model)["ffn"][:2]
    assert first.size == second.size
    scores = [unit_scores(g, "random", seed=3) for g in (first, second)]
    assert np.argsort(scores[0]).tolist() != np.argsort(scores[1]).tolist()
    np.testing.assert_array_equal(unit_scores(first, "random", seed=3), scores[0])
    assert not np.array_equal(unit_scores(first, "random", seed=4), scores[0])
