"""The real SmolLM2 chat model through to_tflite_generator (slow: ~3 minutes)."""

import numpy as np
import pytest

import tfcompress
from tests.export.generator.to_tflite_generator_test import LiteRTGenerator
from tfcompress.export.generator.keras_reference import keras_greedy

PROMPTS = (
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n",
)
CACHE = 96
NEW_TOKENS = 24


@pytest.mark.slow
def test_greedy_answers_identical_in_keras_and_float32_file(tmp_path):
    causal_lm = tfcompress.models.from_gguf(tfcompress.models.smollm2_path(), sequence_length=CACHE)
    result = tfcompress.export.to_tflite_generator(
        causal_lm,
        target="float32",
        cache_length=CACHE,
        prefill_lengths=(48,),
        path=tmp_path / "smollm2.tflite",
    )
    assert result.checks["logits_match"]["relative_error"] < 1e-4
    meta = tfcompress.export.read_generator_metadata(tmp_path / "smollm2.tflite")
    assert meta["num_layers"] == 30 and meta["num_kv_heads"] == 3 and meta["head_dim"] == 64
    assert meta["tokenizer"]["special_tokens"]["<|im_end|>"] in meta["end_token_ids"]
    tokenizer = causal_lm.preprocessor.tokenizer
    answers = []
    for prompt in PROMPTS:
        ids = [int(i) for i in np.asarray(tokenizer(prompt))]
        expected = keras_greedy(causal_lm, ids, NEW_TOKENS, CACHE)
        assert LiteRTGenerator(result.content).greedy(ids, NEW_TOKENS, 48) == expected
        answers.append(tokenizer.detokenize(expected))
    assert "Paris" in answers[0]
