"""Runs examples/chatbot/compress_chatbot.py end to end on a tiny GGUF teacher, twice."""

import json
import math

import keras
import pytest

import tfcompress.models  # noqa: F401  (registers the Llama3Backbone the student is saved with)
from tests.models import tiny_llama
from tfcompress.runtime import Generator

import testing

# A whole example run in a subprocess: in the slow tier, which CI runs too.
pytestmark = pytest.mark.slow

_STAGES = ["teacher fp32", "teacher int8", "student fp32", "student int8"]


def _run(tmp_path, *flags):
    gguf = tmp_path / "tiny.gguf"
    if not gguf.exists():
        tiny_llama.write_gguf(gguf, tiny_llama.hf_weights(tiny_llama.random_backbone()))
    result = testing.run_example(
        "chatbot/compress_chatbot.py",
        tmp_path,
        f"--teacher_gguf={gguf}",
        "--student_layers=1",
        "--steps=4",
        "--checkpoint_every=2",
        "--batch_size=2",
        "--seq_len=16",
        "--train_windows=4",
        "--top_k=8",
        "--eval_sequences=2",
        "--eval_length=16",
        "--prompt_length=8",
        "--decode_tokens=4",
        "--cache_length=32",
        "--prefill_lengths=8",
        f"--output_dir={tmp_path / 'out'}",
        *flags,
    )
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(first run stopped mid-distillation, second run resuming, third run with all done)."""
    tmp_path = tmp_path_factory.mktemp("chatbot")
    out = tmp_path / "out"
    first = _run(tmp_path, "--max_steps_this_run=2")
    after_first = sorted(path.name for path in out.iterdir())
    second = _run(tmp_path)
    third = _run(tmp_path)
    return out, (first, after_first), second, third


def test_first_run_stops_after_a_checkpoint_and_says_how_to_continue(runs):
    _, (first, files), _, _ = runs
    assert "stopped at step 2/4" in first
    assert "rerun the same command to continue" in first
    assert "student_checkpoint.keras" in files and "optimizer.npz" in files
    assert "student_fp32.keras" not in files and "stage_table.json" not in files
    assert "teacher_fp32.tflite" in files and "teacher_int8.tflite" in files


def test_a_rerun_with_other_settings_is_refused_before_any_work(runs, tmp_path):
    out, _, _, _ = runs
    result = testing.run_example(
        "chatbot/compress_chatbot.py", tmp_path, f"--output_dir={out}", timeout=300, check=False
    )
    assert result.returncode != 0
    assert "holds the files of a run with other settings" in result.stderr
    assert "--steps was 4, now 100" in result.stderr


def test_second_run_resumes_the_distillation_where_it_stopped(runs):
    out, _, second, _ = runs
    assert "teacher_fp32.tflite exists, kept" in second
    # The optimizer's state is restored with its step: the learning-rate
    # schedule continues instead of restarting its warm-up.
    assert "resuming at step 2/4 (optimizer step 2)" in second
    assert "steps 3-4 of 4" in second and "steps 1-2 of 4" not in second
    progress = json.loads((out / "distill_progress.json").read_text())
    assert progress["steps_done"] == 4
    assert [h["step"] for h in progress["history"]] == [2, 4]
    assert all(math.isfinite(h["distillation_loss"]) for h in progress["history"])
    student = keras.saving.load_model(out / "student_fp32.keras")
    assert len(student.backbone.transformer_layers) == 1


def test_stage_table_has_every_stage_measured_through_its_file(runs):
    out, _, second, _ = runs
    table = json.loads((out / "stage_table.json").read_text())
    rows = {row["stage"]: row for row in table["stages"]}
    assert list(rows) == _STAGES
    for stage, row in rows.items():
        path = out / row["file"]
        assert row["file_bytes"] == path.stat().st_size
        assert math.isfinite(row["perplexity"]) and row["perplexity"] > 1.0
        assert row["decode_tok_s"] > 0 and row["prefill_tok_s"] > 0 and row["ttft_ms"] > 0
        assert row["prompt_tokens"] == 8 and row["decode_steps"] == 3
    assert rows["teacher fp32"]["size_vs_teacher"] == 1.0
    assert rows["student fp32"]["parameters"] < rows["teacher fp32"]["parameters"]
    assert rows["student int8"]["file_bytes"] < rows["student fp32"]["file_bytes"]
    assert rows["teacher int8"]["file_bytes"] < rows["teacher fp32"]["file_bytes"]
    assert table["held_out_tokens_scored"] == 32
    text = (out / "stage_table.txt").read_text()
    assert all(stage in text for stage in _STAGES) and text.strip() in second
    assert (out / "stage_table.png").read_bytes()[:4] == b"\x89PNG"


def test_student_file_is_chat_ready(runs):
    out, _, _, _ = runs
    with Generator(out / "student_int8.tflite", num_threads=1) as generator:
        assert generator.metadata["num_layers"] == 1
        result = generator.chat([{"role": "user", "content": "hello"}], max_new_tokens=3)
    assert 1 <= len(result.token_ids) <= 3


def test_third_run_redoes_nothing(runs):
    _, _, second, third = runs
    assert "student_int8.tflite exists, kept" in third
    assert "distil] " in third and "exists (4 steps), kept" in third
    assert third.count("measured before, kept") == 4
    assert "teacher cache" not in third
    table_second = second[second.index("stage ") : second.index("[done]")]
    table_third = third[third.index("stage ") : third.index("[done]")]
    assert table_second == table_third
