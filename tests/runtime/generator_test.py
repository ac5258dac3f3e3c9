import subprocess
import sys

import numpy as np
import pytest

from tests.runtime import toy_generator
from tfcompress.runtime import Generator, Sampler

ENGINES = ["compiled_model", "interpreter"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.tflite"
    weights = toy_generator.write(path, cache_length=32, prefill_lengths=(4, 8))
    return str(path), weights


def _greedy_reference(weights, prompt, steps):
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(np.argmax(toy_generator.numpy_logits(weights, ids)[-1])))
    return ids[len(prompt) :]


@pytest.mark.parametrize("engine", ENGINES)
def test_teacher_forced_logits_match_the_reference(toy, engine):
    path, weights = toy
    ids = [5, 70, 80, 90, 100, 3, 200, 7, 8, 9]
    logits = Generator(path, engine=engine).logits(ids)
    np.testing.assert_allclose(logits, toy_generator.numpy_logits(weights, ids), atol=1e-4)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("prompt_length", [1, 2, 4, 5, 9, 17])
def test_prefill_then_decode_equals_the_reference_greedy_continuation(toy, engine, prompt_length):
    path, weights = toy
    prompt = list(np.random.default_rng(prompt_length).integers(3, 250, size=prompt_length))
    generator = Generator(path, engine=engine)
    result = generator.generate(prompt, max_new_tokens=10, stop_token_ids=[])
    assert result.token_ids == _greedy_reference(weights, prompt, 10)
    assert result.finish_reason == "max_new_tokens"
    assert result.prompt_tokens == prompt_length and result.decode_steps == 9


def test_cache_is_reused_across_turns_and_rewound_where_the_prompt_differs(toy):
    path, weights = toy
    generator = Generator(path)
    first = generator.generate([5, 70, 80], max_new_tokens=4, stop_token_ids=[])
    assert generator.tokens == [5, 70, 80] + first.token_ids[:-1]
    follow_up = generator.tokens + [first.token_ids[-1], 90, 91]
    second = generator.generate(follow_up, max_new_tokens=3, stop_token_ids=[])
    assert second.reused_tokens == 6 and second.prompt_tokens == 3
    assert second.token_ids == _greedy_reference(weights, follow_up, 3)
    # A different earlier token: only the common prefix is kept.
    changed = [5, 71] + follow_up[2:]
    third = generator.generate(changed, max_new_tokens=3, stop_token_ids=[])
    assert third.reused_tokens == 1
    assert third.token_ids == _greedy_reference(weights, changed, 3)


def test_same_seed_same_text_and_stop_tokens(toy):
    path, _ = toy
    generator = Generator(path)

    def sample(seed):
        generator.reset()
        return generator.generate(
            "hello world", max_new_tokens=12, sampler=Sampler(1.0, seed=seed), stop_token_ids=[]
        ).token_ids

    assert sample(1) == sample(1)
    assert sample(1) != sample(2)
    greedy = generator.generate([5, 6], max_new_tokens=5, stop_token_ids=[]).token_ids
    stopped = generator.generate([5, 6], max_new_tokens=5, stop_token_ids=[greedy[2]])
    first = greedy.index(greedy[2])
    assert stopped.token_ids == greedy[: first + 1] and stopped.finish_reason == "stop_token"


def test_streams_the_same_text_it_returns_and_stop_strings(toy):
    path, _ = toy
    generator = Generator(path)
    pieces = []
    result = generator.generate(
        "hello", max_new_tokens=20, stop_token_ids=[], on_text=pieces.append
    )
    assert "".join(pieces) == result.text == generator.tokenizer.decode(result.token_ids)
    stop = result.text[3:6]
    cut = generator.generate("hello", max_new_tokens=20, stop_token_ids=[], stop_strings=[stop])
    assert cut.finish_reason == "stop_string" and cut.text == result.text[: result.text.index(stop)]


def test_context_full(toy):
    path, weights = toy
    generator = Generator(path)
    with pytest.raises(ValueError, match="The prompt has 32 tokens; the cache_length .* is 32"):
        generator.generate([5] * 32)
    result = generator.generate([5] * 28, max_new_tokens=50, stop_token_ids=[])
    assert result.finish_reason == "context_full" and len(result.token_ids) == 5
    assert result.token_ids == _greedy_reference(weights, [5] * 28, 5)
    with pytest.raises(ValueError, match=r"The context is full: 32 cached \+ 1 new tokens exceed"):
        generator.append([5])
    generator.reset()
    assert generator.tokens == [] and len(generator.append([5]))


def test_interrupt_and_chat_template(toy):
    path, weights = toy
    generator = Generator(path)
    calls = []
    result = generator.generate(
        [5, 6],
        max_new_tokens=50,
        stop_token_ids=[],
        should_stop=lambda: len(calls.append(1) or calls) > 2,
    )
    assert result.finish_reason == "interrupted" and len(result.token_ids) == 3
    messages = [{"role": "user", "content": "hello"}]
    assert (
        generator.render(messages) == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = generator.tokenizer.encode(generator.render(messages))
    assert ids[0] == 1 and ids[-1] == generator.tokenizer.encode("\n")[0]
    generator.reset()
    answer = generator.chat(messages, max_new_tokens=4, stop_token_ids=[])
    assert answer.token_ids == _greedy_reference(weights, ids, 4)


def test_bad_files_and_arguments(toy, tmp_path):
    path, _ = toy
    plain = tmp_path / "plain.tflite"
    content = open(path, "rb").read()
    with pytest.raises(ValueError, match="must be an existing generator .tflite file"):
        Generator(tmp_path / "missing.tflite")
    plain.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        Generator(plain)
    with pytest.raises(ValueError, match="engine"):
        Generator(path, engine="gpu")
    generator = Generator(path)
    with pytest.raises(ValueError, match=r"`token_ids` must be in \[0, \d+\)"):
        generator.append([100000])
    with pytest.raises(ValueError, match="max_new_tokens"):
        generator.generate([5], max_new_tokens=0)
    assert content[4:8] == b"TFL3"


def test_no_metadata_is_a_clear_error(tmp_path):
    tf = pytest.importorskip("tensorflow")
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x + 1}, input_signature=[tf.TensorSpec([1], tf.float32)])
    content = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.f.get_concrete_function()], module
    ).convert()
    path = tmp_path / "plain.tflite"
    path.write_bytes(content)
    with pytest.raises(
        ValueError, match="has no 'tfcompress_generator' metadata: it is not a generator file"
    ):
        Generator(path)


def test_chat_time_imports_no_tensorflow(toy):
    path, _ = toy
    code = (
        "import sys\n"
        "from tfcompress.runtime import Generator\n"
        f"g = Generator({path!r})\n"
        "r = g.chat([{'role': 'user', 'content': 'hello'}], max_new_tokens=3)\n"
        "assert len(r.token_ids) >= 1\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_hub')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
