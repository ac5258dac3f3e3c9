"""`tfcompress demo` end to end (tiny epochs), then inspect / bench / export on its files."""

import json
import os
import subprocess
import sys

import pytest


def _tfcompress(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "tfcompress.cli.main", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = _tfcompress(
        "demo", f"--output_dir={out}", "--epochs=4", "--prune_epochs=2",
        "--qat_epochs=1", "--bench_runs=10", "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_demo_prints_every_stage_and_the_table(demo_dir):
    _, stdout = demo_dir
    for stage in range(1, 7):
        assert f"[{stage}/6]" in stdout
    for row in ("keras float", "float32 (ref)", "float16 pruned", "dynamic_int8 pruned", "int8 pruned+QAT"):
        assert row in stdout
    assert "LiteRT backend: ai_edge_litert" in stdout


def test_demo_writes_models_report_plot_and_c_array(demo_dir):
    out, _ = demo_dir
    for name in ("float.keras", "pruned.keras", "qat.keras", "float32.tflite",
                 "float16_pruned.tflite", "dynamic_int8_pruned.tflite",
                 "int8_pruned_qat.tflite", "digits_model.h", "digits_model.cc"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert "int8 pruned+QAT" in names
    int8 = next(c for c in report["candidates"] if c["name"] == "int8 pruned+QAT")
    float32 = next(c for c in report["candidates"] if c["name"] == "float32")
    assert int8["raw_bytes"] < 0.35 * float32["raw_bytes"]
    assert int8["metrics"]["accuracy"] > 0.8


def test_inspect_reports_int8_tensors_and_sparsity(demo_dir):
    out, _ = demo_dir
    result = _tfcompress("inspect", str(out / "int8_pruned_qat.tflite"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CONV_2D" in result.stdout and "FULLY_CONNECTED" in result.stdout
    assert "input:" in result.stdout and " int8 scale=" in result.stdout
    assert "75.0%" in result.stdout  # the pruned kernels stay sparse in int8


def test_inspect_corrupt_file_is_a_clear_error(demo_dir, tmp_path):
    out, _ = demo_dir
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes((out / "int8_pruned_qat.tflite").read_bytes()[:1000])
    result = _tfcompress("inspect", str(corrupt))
    assert result.returncode == 1
    assert "contents are corrupt" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_prints_percentiles(demo_dir):
    out, _ = demo_dir
    result = _tfcompress("bench", str(out / "float32.tflite"), "--runs=5", "--threads=1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "backend ai_edge_litert, threads 1, 5 runs" in result.stdout
    assert "p50" in result.stdout and "p90" in result.stdout


def test_export_command_writes_a_verified_file_and_c_array(demo_dir, tmp_path):
    out, _ = demo_dir
    target = tmp_path / "pruned_dynamic.tflite"
    result = _tfcompress(
        "export", f"--model={out / 'pruned.keras'}", "--target=dynamic_int8",
        f"--output={target}", "--c_array=pruned_model",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.stat().st_size > 0
    assert "check outputs_match" in result.stdout
    assert (tmp_path / "pruned_model.h").exists()
