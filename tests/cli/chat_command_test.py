"""`tfcompress chat`: one-shot and interactive chat with a generator file, and the bundled model cache."""

import io
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.runtime import toy_generator
from tfcompress.cli import chat_command
from tfcompress.runtime import Generator, Sampler

STATS = re.compile(
    r"\[prefill (\d+) tok at [\d.]+ tok/s \((\d+) reused\), decode (\d+) tok at [\d.]+ tok/s, "
    r"first token after \d+ ms, (\w+)\]"
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    path = tmp_path_factory.mktemp("chat") / "toy.tflite"
    toy_generator.write(path, cache_length=64, prefill_lengths=(8, 16))
    return str(path)


def _chat(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "tfcompress", "chat", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_prompt_streams_the_greedy_answer_then_one_stats_line(toy):
    result = _chat(
        toy, "--prompt=hello world", "--system=be brief", "--temperature=0", "--max_new_tokens=6"
    )
    assert result.returncode == 0, result.stderr
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello world"},
    ]
    expected = Generator(toy).chat(messages, max_new_tokens=6, sampler=Sampler(0.0))
    text, stats, _ = result.stdout.rsplit("\n", 2)
    assert text == expected.text
    prefill, reused, decode, reason = STATS.fullmatch(stats).groups()
    assert (int(prefill), int(reused), reason) == (
        expected.prompt_tokens,
        0,
        expected.finish_reason,
    )
    assert "INFO" not in result.stderr


def test_same_seed_same_answer(toy):
    answers = [
        _chat(
            toy,
            "--prompt=hello",
            "--temperature=1.0",
            "--top_k=0",
            f"--seed={seed}",
            "--max_new_tokens=10",
        ).stdout.rsplit("\n", 2)[0]
        for seed in (3, 3, 4)
    ]
    assert answers[0] == answers[1]
    assert answers[0] != answers[2]


def test_interactive_reuses_the_cache_and_reset_and_stats(toy):
    result = _chat(
        toy,
        "--temperature=0",
        "--max_new_tokens=4",
        stdin="hello\nworld\n/stats\n/reset\n/stats\n/nope\n",
    )
    assert result.returncode == 0, result.stderr
    turns = [
        STATS.fullmatch(line).groups()
        for line in result.stdout.splitlines()
        if line.startswith("[prefill")
    ]
    assert len(turns) == 2
    assert int(turns[0][1]) == 0 and int(turns[1][1]) > 0
    assert "2 turn(s) in this conversation" in result.stdout
    assert re.search(r"cache 0 / 64 tokens, 0 turn\(s\)", result.stdout)
    assert "[unknown command /nope]" in result.stdout


def test_a_prompt_longer_than_the_context_is_reported(toy):
    result = _chat(toy, "--prompt=" + "hello " * 80)
    assert result.returncode == 1
    assert "the cache_length of" in result.stdout and "Shorten the prompt" in result.stdout


class _InterruptingOut(io.StringIO):
    """Sends this process SIGINT while the second piece of an answer is shown."""

    def write(self, text):
        if self.getvalue() and not hasattr(self, "sent"):
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return super().write(text)


def test_ctrl_c_stops_the_answer_not_the_session(toy):
    out = _InterruptingOut()
    session = chat_command.ChatSession(Generator(toy), None, Sampler(0.0), 50, out=out)
    first = session.answer("hello")
    assert first.finish_reason == "interrupted" and len(first.token_ids) <= 3
    second = session.answer("world")
    assert second.finish_reason in ("max_new_tokens", "stop_token", "context_full")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_bundled_model_is_built_once_into_the_cache(tmp_path, monkeypatch):
    from tests import _tiny_causal_lm
    from tfcompress import models

    built = []
    monkeypatch.setenv("TFCOMPRESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "smollm2_path", lambda: "smollm2.gguf")
    monkeypatch.setattr(
        models, "from_gguf", lambda path: built.append(path) or _tiny_causal_lm.tiny_llama3()
    )
    lines = []
    path = chat_command.bundled_model("float32", 160, log=lines.append)
    assert path == str(tmp_path / "cache" / "smollm2-135m-instruct-float32-160.tflite")
    assert built == ["smollm2.gguf"] and len(lines) == 4 and lines[-1].startswith("  done in")
    assert Generator(path).cache_length == 160
    assert chat_command.bundled_model("float32", 160, log=lines.append) == path
    assert built == ["smollm2.gguf"] and len(lines) == 4
