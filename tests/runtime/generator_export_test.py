"""`Generator` on files written by `tfcompress.export.to_tflite_generator` from tiny keras-hub models."""

import numpy as np
import pytest

from tests import _tiny_causal_lm
from tfcompress.export import to_tflite_generator
from tfcompress.export.generator.keras_reference import keras_greedy
from tfcompress.runtime import Generator, Sampler

CACHE_LENGTH = 128


@pytest.fixture(scope="module", params=["llama3", "gpt2"])
def exported(request, tmp_path_factory):
    build = _tiny_causal_lm.tiny_llama3 if request.param == "llama3" else _tiny_causal_lm.tiny_gpt2
    causal_lm = build(seed=3)
    path = tmp_path_factory.mktemp(request.param) / "tiny.tflite"
    to_tflite_generator(
        causal_lm,
        target="float32",
        cache_length=CACHE_LENGTH,
        prefill_lengths=(8, 16),
        path=str(path),
        chat_template=_tiny_causal_lm.CHAT_TEMPLATE,
    )
    return causal_lm, str(path)


@pytest.mark.parametrize("engine", ["compiled_model", "interpreter"])
def test_greedy_continuation_equals_keras_for_64_tokens(exported, engine):
    causal_lm, path = exported
    generator = Generator(path, engine=engine)
    prompt = generator.tokenizer.encode("hello world, hello hello world")
    expected = keras_greedy(causal_lm, prompt, 64, CACHE_LENGTH)
    result = generator.generate(prompt, max_new_tokens=64, sampler=Sampler(0.0), stop_token_ids=[])
    assert result.token_ids == expected


def test_tokenizer_from_the_file_matches_the_keras_hub_tokenizer(exported):
    causal_lm, path = exported
    generator = Generator(path)
    for text in ["hello world", "<|im_start|>user\nhello<|im_end|>\n", "world, hello! 123 é"]:
        theirs = [int(i) for i in np.asarray(causal_lm.preprocessor.tokenizer(text))]
        assert generator.tokenizer.encode(text) == theirs, text


def test_chat_turns_reuse_the_cache_and_match_a_fresh_run(exported):
    _, path = exported
    generator = Generator(path)
    messages = [{"role": "user", "content": "hello"}]
    first = generator.chat(messages, max_new_tokens=6, sampler=Sampler(0.0))
    assert first.token_ids
    messages += [
        {"role": "assistant", "content": "hello world"},
        {"role": "user", "content": "world"},
    ]
    second = generator.chat(messages, max_new_tokens=6, sampler=Sampler(0.0))
    assert second.reused_tokens > 0
    fresh = Generator(path).chat(messages, max_new_tokens=6, sampler=Sampler(0.0))
    assert fresh.reused_tokens == 0
    assert second.token_ids == fresh.token_ids
