"""The `tfcompress` command dispatcher, `python -m tfcompress` and command errors."""

import os
import re
import subprocess
import sys

import pytest

from tfcompress.cli import main


def test_help_lists_every_command(capsys):
    assert main.run(["tfcompress", "--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "export", "inspect", "bench"):
        assert f"  {command}" in out


def test_unknown_command_names_it_and_the_choices(capsys):
    assert main.run(["tfcompress", "compress-everything"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'compress-everything'" in err
    assert "demo, export, inspect, bench" in err


def test_console_script_prints_help():
    result = subprocess.run(
        [sys.executable, "-m", "tfcompress.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: tfcompress <command>" in result.stdout


def _command(*args, env=None, cwd=None):
    """Runs the command as `python -m tfcompress` (what a CI image without the script does)."""
    return subprocess.run(
        [sys.executable, "-m", "tfcompress", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, **(env or {})),
        cwd=cwd,
    )


def test_python_dash_m_tfcompress_runs_the_command():
    result = _command("--help")
    assert result.returncode == 0, result.stderr
    assert "usage: tfcompress <command>" in result.stdout
    assert "--verbosity=1" in result.stdout and "TFCOMPRESS_TRACEBACK=1" in result.stdout
    unknown = _command("compress-everything")
    assert unknown.returncode == 2
    assert "unknown command 'compress-everything'" in unknown.stderr


@pytest.fixture
def not_a_model(tmp_path):
    path = tmp_path / "not_a_model.tflite"
    path.write_text("hello, I am a text file\n")
    return path


def _bad_inputs(tmp_path, not_a_model):
    return {
        "export": (
            ["export", f"--model={tmp_path / 'missing.keras'}", "--target=int8"],
            f"tfcompress export: --model={tmp_path / 'missing.keras'} is not an existing file",
        ),
        "export_representative": (
            ["export", f"--model={not_a_model}", f"--representative={tmp_path / 'calib.npy'}"],
            f"tfcompress export: --representative={tmp_path / 'calib.npy'} is not an existing file",
        ),
        "export_not_keras": (
            ["export", f"--model={not_a_model}"],
            "tfcompress export: `filepath` must be an existing .keras file",
        ),
        "bench": (
            ["bench", str(not_a_model)],
            "tfcompress bench: The file .* is not a valid TFLite flatbuffer",
        ),
        "bench_missing": (
            ["bench", str(tmp_path / "gone.tflite")],
            "tfcompress bench: .* not an existing file",
        ),
        "inspect": (
            ["inspect", str(not_a_model)],
            "tfcompress inspect: The file .* is not a valid TFLite flatbuffer",
        ),
        "demo": (
            ["demo", f"--output_dir={tmp_path / 'out'}", "--target_sparsity=1.5"],
            r"tfcompress demo: `target_sparsity` must be in \[0, 1\). Received: target_sparsity=1.5",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "export",
        "export_representative",
        "export_not_keras",
        "bench",
        "bench_missing",
        "inspect",
        "demo",
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(tmp_path, not_a_model, case):
    args, message = _bad_inputs(tmp_path, not_a_model)[case]
    result = _command(*args, env={"TFCOMPRESS_TRACEBACK": "0"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("tfcompress ")]
    assert len(ours) == 1, result.stderr[-2000:]
    assert re.match(message, ours[0]), ours[0]
    assert ours[0].endswith("(--verbosity=1 or TFCOMPRESS_TRACEBACK=1 shows the traceback)")
    assert result.stdout == ""


@pytest.mark.parametrize("how", [["--verbosity=1"], ["-v", "1"], "env"])
def test_verbosity_or_environment_shows_the_traceback(tmp_path, not_a_model, how):
    args = ["bench", str(not_a_model)]
    env = {"TFCOMPRESS_TRACEBACK": "1"} if how == "env" else {"TFCOMPRESS_TRACEBACK": "0"}
    result = _command(*args, *([] if how == "env" else how), env=env)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: The file" in result.stderr
