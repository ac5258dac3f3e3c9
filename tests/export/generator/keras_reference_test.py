"""The Keras reference of the generator export: a cache of the checked steps only."""

import keras
import numpy as np
import pytest

from tests import _tiny_causal_lm
from tfcompress.core import _keras_internals
from tfcompress.export.generator.keras_reference import keras_greedy, keras_step_logits

BUILDERS = {"llama3": _tiny_causal_lm.tiny_llama3, "gpt2": _tiny_causal_lm.tiny_gpt2}
IDS = [5, 17, 3, 40, 22, 9]


def _full_cache_logits(causal_lm, token_ids, cache_length):
    """The reference as it was: a cache of `cache_length` positions seeded with the ids."""
    padded = np.zeros((1, cache_length), np.int32)
    padded[0, : len(token_ids)] = token_ids
    cache = _keras_internals.build_cache(causal_lm, keras.ops.convert_to_tensor(padded))
    logits = []
    for i, token in enumerate(token_ids):
        step, _, cache = causal_lm.call_with_cache(np.array([[token]], np.int32), cache, i)
        logits.append(keras.ops.convert_to_numpy(step)[0, 0])
    return np.stack(logits)


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def causal_lm(request):
    return BUILDERS[request.param](seed=3)


def test_step_logits_equal_those_of_a_full_length_cache(causal_lm):
    got = keras_step_logits(causal_lm, IDS, 96)
    want = _full_cache_logits(causal_lm, IDS, 96)
    assert got.shape == (len(IDS), causal_lm.backbone.vocabulary_size)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_seeding_runs_over_the_checked_steps_only(causal_lm, monkeypatch):
    lengths = []
    real = _keras_internals.build_cache

    def spy(model, token_ids):
        lengths.append(int(token_ids.shape[1]))
        return real(model, token_ids)

    monkeypatch.setattr("tfcompress.export.generator.keras_reference.build_cache", spy)
    keras_step_logits(causal_lm, IDS[:4], 512)
    keras_greedy(causal_lm, IDS[:3], 5, 512)
    assert lengths == [4, 7]


def test_greedy_equals_argmax_of_the_full_cache_steps(causal_lm):
    continuation = keras_greedy(causal_lm, IDS[:2], 4, 64)
    ids = IDS[:2] + continuation
    full = _full_cache_logits(causal_lm, ids[:-1], 64)
    assert continuation == [int(t) for t in full[1:].argmax(-1)]


def test_steps_beyond_the_cache_length_are_refused(causal_lm):
    with pytest.raises(ValueError, match="6 steps do not fit in a cache of 4 positions"):
        keras_step_logits(causal_lm, IDS, 4)
    with pytest.raises(ValueError, match="do not fit in a cache of 4"):
        keras_greedy(causal_lm, IDS[:3], 3, 4)
