"""The `tfcompress` command dispatcher."""

import subprocess
import sys

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
        capture_output=True, text=True, check=True,
    )
    assert "usage: tfcompress <command>" in result.stdout
