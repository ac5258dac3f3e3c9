"""to_tflite_generator on causal LMs whose blocks lost heads to `prune_structured`."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from tests import _tiny_causal_lm
from tfcompress.export import to_tflite_generator
from tfcompress.export.generator.graph import cache_names
from tfcompress.export.generator.keras_reference import keras_greedy, keras_step_logits
from tfcompress.sparsity import prune_structured

from .to_tflite_generator_test import LiteRTGenerator

CACHE = 64


def _pruned(architecture):
    """The tiny model with non-uniform heads per block, pruned in place."""
    if architecture == "llama3":
        causal_lm = _tiny_causal_lm.tiny_llama3(seed=3)  # 4 query heads in 2 key/value groups
        fractions, kept = [0.5, 0.0], [1, 2]
    else:
        causal_lm = _tiny_causal_lm.tiny_gpt2(seed=3)  # 4 heads
        fractions, kept = [0.5, 0.75], [2, 1]
    blocks = [f"{causal_lm.backbone.name}/{b.name}" for b in causal_lm.backbone.transformer_layers]
    heads = {path: f for path, f in zip(blocks, fractions) if f}
    prune_structured(causal_lm, heads=heads, criterion="magnitude", inplace=True)
    return causal_lm, kept


@pytest.fixture(scope="module", params=["gpt2", "llama3"])
def exported(request):
    causal_lm, kept = _pruned(request.param)
    result = to_tflite_generator(
        causal_lm, target="float32", cache_length=CACHE, prefill_lengths=(8,)
    )
    return causal_lm, kept, result


def test_each_layers_cache_has_its_own_head_count(exported):
    causal_lm, kept, result = exported
    assert result.metadata["kv_heads_per_layer"] == kept
    head_dim = 16
    details = Interpreter(model_content=result.content).get_signature_runner("decode")
    inputs = details.get_input_details()
    for i, name in enumerate(cache_names(2)):
        assert tuple(inputs[name]["shape"]) == (1, CACHE, kept[i // 2], head_dim), name
    assert result.checks["logits_match"]["passed"], result.checks["logits_match"]["detail"]


def test_the_tflite_weights_have_the_reduced_shapes(exported):
    _, kept, result = exported
    interpreter = Interpreter(model_content=result.content)
    shapes = {tuple(d["shape"]) for d in interpreter.get_tensor_details()}
    # Fused query/key/value projections [(q + 2 kv heads) * head_dim, hidden]
    # as FULLY_CONNECTED weights.
    for heads in kept:
        query_heads = heads * (2 if result.metadata["architecture"] == "llama3" else 1)
        assert ((query_heads + 2 * heads) * 16, 64) in shapes, (query_heads, sorted(shapes))


def test_tflite_greedy_continuation_equals_keras(exported):
    causal_lm, _, result = exported
    prompt = [int(i) for i in np.asarray(causal_lm.preprocessor.tokenizer("hello world"))]
    expected = keras_greedy(causal_lm, prompt, 24, CACHE)
    assert LiteRTGenerator(result.content).greedy(prompt, 24, 8) == expected


@pytest.mark.parametrize("engine", ["compiled_model", "interpreter"])
def test_the_runtime_runs_layers_with_different_cache_widths(exported, engine, tmp_path):
    import tfcompress

    causal_lm, _, result = exported
    path = tmp_path / "pruned.tflite"
    path.write_bytes(result.content)
    ids = [5, 40, 77, 3, 12]
    expected = keras_step_logits(causal_lm, ids, CACHE)
    with tfcompress.runtime.Generator(path, engine=engine) as generator:
        logits = generator.logits(ids)
    np.testing.assert_allclose(logits, expected, atol=1e-4 * np.abs(expected).max())
