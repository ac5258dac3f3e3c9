"""Llama grouped-query attention pruning: whole key/value groups with their query heads."""

import keras
import keras_hub
import numpy as np
import pytest

import tfcompress
from tfcompress.core import _keras_internals
from tfcompress.sparsity import PrunedLlamaAttention, prune_structured

BLOCKS = ("llama3_backbone/transformer_layer_0", "llama3_backbone/transformer_layer_1")
# 6 query heads in 3 groups of 2, head width 8: block 0 loses one group, block 1 two.
NON_UNIFORM = {BLOCKS[0]: 0.34, BLOCKS[1]: 0.67}


def _llama(num_query_heads=6, num_key_value_heads=3, seed=0):
    """A Llama3CausalLM as keras-hub builds it (untied head, no preprocessor)."""
    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.Llama3Backbone(
        vocabulary_size=96,
        num_layers=2,
        num_query_heads=num_query_heads,
        num_key_value_heads=num_key_value_heads,
        hidden_dim=48,
        intermediate_dim=64,
        tie_word_embeddings=False,
        name="llama3_backbone",
    )
    rng = np.random.default_rng(seed)
    for variable in backbone.weights:
        if not variable.path.endswith("scale"):
            variable.assign(0.3 * rng.normal(size=variable.shape))
    lm = keras_hub.models.Llama3CausalLM(backbone=backbone, preprocessor=None)
    lm.compile(sampler="greedy")
    return lm


def _tokens(length=10, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(1, 96, (batch, length)).astype("int32"),
        "padding_mask": np.ones((batch, length), "int32"),
    }


def _masked(lm, report, copy=True):
    """The original with the query heads of removed groups cut from the output projection."""
    masked = tfcompress.core.copy_model(lm) if copy else lm
    for block in masked.backbone.transformer_layers:
        attention = _keras_internals.block_sublayers(block).attention
        per_group = attention.num_query_heads // attention.num_key_value_heads
        kept = next((r["kept"] for r in report.rows if r["path"].endswith("/" + block.name)), None)
        if kept is None:
            continue
        output = _keras_internals.attention_projections(attention).output.kernel
        value = output.numpy()
        for group in set(range(attention.num_key_value_heads)) - set(kept):
            value[group * per_group : (group + 1) * per_group] = 0
        output.assign(value)
    masked.compile(sampler="greedy")
    return masked


def _assert_class(model, cls):
    # The replacement recipe may subclass the model's class; name and type stay.
    assert isinstance(model, cls) and type(model).__name__ == cls.__name__


def _attention(lm, i):
    return _keras_internals.block_sublayers(lm.backbone.transformer_layers[i]).attention


def test_removed_groups_match_the_masked_original_and_the_class_is_kept():
    lm = _llama()
    data = [_tokens(seed=s) for s in range(2)]
    pruned, report = prune_structured(
        lm, heads=NON_UNIFORM, criterion="taylor", representative_data=data, return_report=True
    )
    _assert_class(pruned, keras_hub.models.Llama3CausalLM)
    _assert_class(pruned.backbone, keras_hub.models.Llama3Backbone)
    assert [len(report.kept("heads", p)) for p in BLOCKS] == [2, 1]
    first, second = _attention(pruned, 0), _attention(pruned, 1)
    assert isinstance(first, PrunedLlamaAttention) and first.head_dim == 8
    assert (first.num_query_heads, first.num_key_value_heads) == (4, 2)
    assert (second.num_query_heads, second.num_key_value_heads) == (2, 1)
    shapes = {w.path: tuple(w.shape) for w in pruned.weights}
    assert shapes["transformer_layer_0/self_attention/query/kernel"] == (48, 4, 8)
    assert shapes["transformer_layer_0/self_attention/key/kernel"] == (48, 2, 8)
    assert shapes["transformer_layer_1/self_attention/value/kernel"] == (48, 1, 8)
    assert shapes["transformer_layer_1/self_attention/attention_output/kernel"] == (2, 8, 48)
    # Per removed group: 2 query heads in and out, 1 key and 1 value head, 8 x 48 each.
    assert pruned.count_params() == lm.count_params() - 3 * 6 * 8 * 48
    x = _tokens(seed=7)
    expected = keras.ops.convert_to_numpy(_masked(lm, report)(x))
    np.testing.assert_allclose(pruned(x), expected, atol=1e-4 * np.abs(expected).max())
    assert not np.allclose(lm(x), expected, atol=1e-2)
    assert _attention(lm, 0).num_key_value_heads == 3  # the model passed in is untouched


def test_non_uniform_groups_round_trip_through_a_keras_file(tmp_path):
    lm = _llama()
    pruned = prune_structured(
        lm, heads=NON_UNIFORM, ffn={BLOCKS[1]: 0.5}, criterion="magnitude", round_to=1
    )
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    _assert_class(loaded, keras_hub.models.Llama3CausalLM)
    _assert_class(loaded.backbone, keras_hub.models.Llama3Backbone)
    assert [_attention(loaded, i).num_key_value_heads for i in (0, 1)] == [2, 1]
    assert all(isinstance(_attention(loaded, i), PrunedLlamaAttention) for i in (0, 1))
    widths = [
        _keras_internals.block_sublayers(b).gate.units for b in loaded.backbone.transformer_layers
    ]
    assert widths == [64, 32]
    x = _tokens(seed=3)
    np.testing.assert_array_equal(loaded(x), pruned(x))


def test_generate_of_the_pruned_model_equals_the_masked_originals():
    lm = _llama()
    pruned, report = prune_structured(
        lm, heads=NON_UNIFORM, criterion="magnitude", return_report=True
    )
    # generate sizes one cache for every block from the config: 3 key/value
    # heads of width 48 // 6; the pruned blocks use the first 2 and 1 of them.
    cache = _keras_internals.build_cache(pruned, keras.ops.zeros((1, 12), "int32"))
    assert tuple(cache.shape) == (1, 2, 2, 12, 3, 8)
    prompt = {
        "token_ids": np.array([[5, 17, 33] + [0] * 13, [9, 2, 71] + [0] * 13], "int32"),
        "padding_mask": np.array([[1] * 3 + [0] * 13] * 2, "int32"),
    }
    pruned.compile(sampler="greedy")
    generated = pruned.generate(prompt, stop_token_ids=None)["token_ids"]
    expected = _masked(lm, report).generate(prompt, stop_token_ids=None)["token_ids"]
    np.testing.assert_array_equal(generated, expected)
    assert not np.array_equal(generated, lm.generate(prompt, stop_token_ids=None)["token_ids"])


def test_every_block_keeps_a_group_and_a_single_group_cannot_shrink():
    _, report = prune_structured(
        _llama(), heads={"global": 0.9}, criterion="magnitude", return_report=True
    )
    assert [row["after"] for row in report.rows] == [1, 1]
    with pytest.raises(
        ValueError, match=r"'llama3_backbone/transformer_layer_0' has a single unit"
    ):
        prune_structured(_llama(num_key_value_heads=1), heads=0.5, criterion="magnitude")


def test_config_round_trips_and_bad_head_counts_are_refused():
    layer = PrunedLlamaAttention(
        num_query_heads=4, num_key_value_heads=2, head_dim=8, rope_max_wavelength=1e5, name="a"
    )
    config = layer.get_config()
    again = PrunedLlamaAttention.from_config(config)
    assert again.get_config() == config and config["head_dim"] == 8
    again.build((None, None, 48))
    assert tuple(again.weights[0].shape) == (48, 4, 8)
    with pytest.raises(ValueError, match=r"multiple of `num_key_value_heads`.*=3, num_key"):
        PrunedLlamaAttention(num_query_heads=3, num_key_value_heads=2, head_dim=8)
    with pytest.raises(
        ValueError, match=r"`head_dim` must be a positive int. Received: head_dim=0"
    ):
        PrunedLlamaAttention(num_query_heads=2, num_key_value_heads=2, head_dim=0)


def test_a_cache_narrower_than_the_layer_is_refused():
    layer = PrunedLlamaAttention(num_query_heads=4, num_key_value_heads=2, head_dim=8)
    x = np.zeros((1, 1, 48), "float32")
    layer(x)
    with pytest.raises(ValueError, match=r"cache has 1 key/value heads, fewer than the layer's 2"):
        layer(x, cache=np.zeros((1, 2, 4, 1, 8), "float32"), cache_update_index=0)


@pytest.mark.slow
def test_smollm2_from_gguf_loses_one_of_its_three_groups_per_block():
    lm = tfcompress.models.from_gguf(tfcompress.models.smollm2_path())
    lm.preprocessor = None
    pruned, report = prune_structured(lm, heads=0.34, criterion="magnitude", return_report=True)
    attention = [
        _keras_internals.block_sublayers(b).attention for b in pruned.backbone.transformer_layers
    ]
    assert {(a.num_query_heads, a.num_key_value_heads, a.head_dim) for a in attention} == {
        (6, 2, 64)
    }
    assert len(report.rows) == 30 and report.params_after < report.params_before
    x = {"token_ids": np.array([[504, 3575, 282, 4649, 314, 30, 2]], "int32")}
    x["padding_mask"] = np.ones_like(x["token_ids"])
    after = keras.ops.convert_to_numpy(pruned(x))
    expected = keras.ops.convert_to_numpy(_masked(lm, report, copy=False)(x))
    np.testing.assert_allclose(after, expected, atol=1e-4 * np.abs(expected).max())
    prompt = {"token_ids": np.array([[504, 3575, 282] + [0] * 5], "int32")}
    prompt["padding_mask"] = (prompt["token_ids"] > 0).astype("int32")
    pruned.compile(sampler="greedy")
    generated = pruned.generate(prompt, stop_token_ids=None)["token_ids"]
    np.testing.assert_array_equal(generated, lm.generate(prompt, stop_token_ids=None)["token_ids"])
