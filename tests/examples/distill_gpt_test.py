"""Runs examples/distill_gpt.py end to end with a tiny teacher."""

import re

import keras
import keras_hub
import pytest

import testing

# A whole example run in a subprocess: in the slow tier, which CI runs too.
pytestmark = pytest.mark.slow


def test_distill_gpt_trains_cuts_distils_and_saves_the_student(tmp_path):
    out_dir = tmp_path / "out"
    result = testing.run_example(
        "distill_gpt.py",
        tmp_path,
        "--teacher_layers=2",
        "--hidden_dim=32",
        "--num_heads=2",
        "--teacher_steps=20",
        "--steps=10",
        "--seq_len=32",
        "--batch_size=8",
        f"--output_dir={out_dir}",
        timeout=300,
    )

    assert "[student] teacher blocks [1]:" in result.stdout
    match = re.search(r"validation perplexity (\d+\.\d+) \(.*cut student (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) < float(match.group(2))
    assert "'feature_loss'" in result.stdout and "'distillation_loss'" in result.stdout
    student = keras.saving.load_model(out_dir / "student.keras")
    assert type(student) is keras_hub.models.GPT2CausalLM
    assert len(student.backbone.transformer_layers) == 1
    assert (out_dir / "teacher.keras").is_file()
    assert not (tmp_path / "tfcompress_out").exists()
