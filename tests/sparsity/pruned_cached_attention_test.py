"""GPT-2 with heads removed: `generate` over the cache keras-hub sizes from the config."""

import keras
import keras_hub
import numpy as np
import pytest

import tfcompress
from tests import _tiny_causal_lm
from tfcompress.core import _keras_internals
from tfcompress.sparsity import PrunedCachedMultiHeadAttention, prune_structured


def _gpt2():
    lm = _tiny_causal_lm.tiny_gpt2(seed=2)
    lm.preprocessor = None
    lm.compile(sampler="greedy")
    return lm


def _blocks(lm):
    return [f"{lm.backbone.name}/{b.name}" for b in lm.backbone.transformer_layers]


def _masked(lm, report):
    """The original with removed heads' rows of the output projection zeroed."""
    masked = tfcompress.core.copy_model(lm)
    for path, block in zip(_blocks(lm), masked.backbone.transformer_layers):
        kept = report.kept("heads", path)
        if kept is None:
            continue
        attention = _keras_internals.block_sublayers(block).attention
        output = _keras_internals.attention_projections(attention).output.kernel
        value = output.numpy()
        value[sorted(set(range(value.shape[0])) - set(kept))] = 0
        output.assign(value)
    masked.compile(sampler="greedy")
    return masked


@pytest.fixture(scope="module")
def pruned():
    lm = _gpt2()
    first, second = _blocks(lm)
    model, report = prune_structured(
        lm, heads={first: 0.5, second: 0.75}, criterion="magnitude", return_report=True
    )
    model.compile(sampler="greedy")
    return lm, model, report


def _prompt():
    return {
        "token_ids": np.array([[40, 101, 7] + [0] * 17, [3, 250, 99] + [0] * 17], "int32"),
        "padding_mask": np.array([[1] * 3 + [0] * 17] * 2, "int32"),
    }


def test_greedy_generate_equals_the_masked_originals(pruned):
    lm, model, report = pruned
    attention = [
        _keras_internals.block_sublayers(b).attention for b in model.backbone.transformer_layers
    ]
    assert [a.num_heads for a in attention] == [2, 1] and {a.key_dim for a in attention} == {16}
    assert all(isinstance(a, PrunedCachedMultiHeadAttention) for a in attention)
    # The cache keeps the config's 4 heads per block; the blocks use their first 2 and 1.
    cache = _keras_internals.build_cache(model, keras.ops.zeros((1, 20), "int32"))
    assert tuple(cache.shape) == (1, 2, 2, 20, 4, 16)
    generated = model.generate(_prompt(), stop_token_ids=None)["token_ids"]
    expected = _masked(lm, report).generate(_prompt(), stop_token_ids=None)["token_ids"]
    np.testing.assert_array_equal(generated, expected)
    assert not np.array_equal(generated, lm.generate(_prompt(), stop_token_ids=None)["token_ids"])


def test_the_pruned_causal_lm_round_trips_through_a_keras_file(pruned, tmp_path):
    _, model, _ = pruned
    model.save(tmp_path / "gpt2.keras")
    loaded = keras.saving.load_model(tmp_path / "gpt2.keras")
    assert isinstance(loaded, keras_hub.models.GPT2CausalLM)
    attention = [
        _keras_internals.block_sublayers(b).attention for b in loaded.backbone.transformer_layers
    ]
    assert [type(a).__name__ for a in attention] == ["PrunedCachedMultiHeadAttention"] * 2
    loaded.compile(sampler="greedy")
    np.testing.assert_array_equal(
        loaded.generate(_prompt(), stop_token_ids=None)["token_ids"],
        model.generate(_prompt(), stop_token_ids=None)["token_ids"],
    )


def test_a_cache_narrower_than_the_layer_is_refused():
    layer = PrunedCachedMultiHeadAttention(num_heads=2, key_dim=4)
    x = np.zeros((1, 1, 8), "float32")
    layer(x, x)
    with pytest.raises(ValueError, match=r"cache has 1 key/value heads, fewer than the layer's 2"):
        layer(x, x, cache=np.zeros((1, 2, 4, 1, 4), "float32"), cache_update_index=0)
