"""Runs examples/distill_gpt.py end to end with a tiny teacher."""

import os
import pathlib
import re
import subprocess
import sys

import keras
import keras_hub

_REPO = pathlib.Path(__file__).resolve().parents[2]
_EXAMPLE = _REPO / "examples" / "distill_gpt.py"
_FLAGFILE = _REPO / "examples" / "distill_gpt.flags"


def test_distill_gpt_trains_cuts_distils_and_saves_the_student(tmp_path):
    out_dir = tmp_path / "out"
    # The shipped flagfile comes first, so it must parse; later flags win.
    argv = [
        sys.executable,
        str(_EXAMPLE),
        f"--flagfile={_FLAGFILE}",
        "--teacher_layers=2",
        "--hidden_dim=32",
        "--num_heads=2",
        "--teacher_steps=20",
        "--steps=10",
        "--seq_len=32",
        "--batch_size=8",
        f"--output_dir={out_dir}",
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(_REPO))
    result = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]

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
