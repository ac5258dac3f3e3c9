"""`tfcompress demo` end to end (tiny epochs), then inspect / bench / export on its files."""

import io
import json
import os
import re
import subprocess
import sys
import zipfile

import h5py
import pytest

# INFO lines of TensorFlow's SavedModel writer and of the TFLite converter.
_NOISE = ("Using new converter", "Assets written to", "Sharding callback duration")


def _tfcompress(*args, timeout=600):
    # As a user runs it: the command itself must quiet TensorFlow.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "TFCOMPRESS_TRACEBACK")
    }
    return subprocess.run(
        [sys.executable, "-m", "tfcompress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _noise(result):
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if any(n in line for n in _NOISE)
    ]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = _tfcompress(
        "demo",
        f"--output_dir={out}",
        "--epochs=4",
        "--prune_epochs=1",
        "--recover_epochs=1",
        "--qat_epochs=1",
        "--bench_rounds=3",
        "--bench_runs=5",
        "--verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_demo_prints_every_stage_and_the_table(demo_dir):
    _, result = demo_dir
    stdout = result.stdout
    for stage in range(1, 7):
        assert f"[{stage}/6]" in stdout
    for row in (
        "keras float",
        "float32 (ref)",
        "float16 pruned",
        "dynamic_int8 pruned",
        "int8 pruned+QAT",
    ):
        assert row in stdout
    assert re.search(r"^name .* accuracy +f1 +agreement$", stdout, flags=re.M)
    assert "(PolynomialDecay over 1 epochs, then 1 recovery epochs)" in stdout
    assert "LiteRT backend: ai_edge_litert" in stdout
    assert "(3 interleaved rounds x 5 timed runs per model)" in stdout
    assert "Latency: median of 15 timed runs per model (batch of 1), 3 rounds x 5 runs" in stdout
    assert "LiteRT ai_edge_litert 1 thread(s)" in stdout
    assert re.search(r"tensor arena [\d,]+ bytes: TFLM measured [\d,]+", stdout)
    assert re.search(
        r"TFLM check: 360 inputs run in TFLite Micro, outputs vs LiteRT max [01] LSB", stdout
    )


def test_demo_is_quiet_by_default(demo_dir):
    _, result = demo_dir
    assert _noise(result) == []
    # No absl-formatted INFO line from Python code either (TensorFlow's C++
    # start-up lines, "I0000 ... port.cc", ignore TF_CPP_MIN_LOG_LEVEL in 2.20+).
    assert not re.findall(r"^I\d{4} [\d:.]+ +\d+ \w+\.py:\d+\]", result.stderr, flags=re.M)


def test_demo_writes_models_report_plot_and_c_array(demo_dir):
    out, _ = demo_dir
    for name in (
        "float.keras",
        "pruned.keras",
        "qat.keras",
        "float32.tflite",
        "float16_pruned.tflite",
        "dynamic_int8_pruned.tflite",
        "int8_pruned_qat.tflite",
        "digits_model.h",
        "digits_model.cc",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    names = [c["name"] for c in report["candidates"]]
    assert "int8 pruned+QAT" in names
    int8 = next(c for c in report["candidates"] if c["name"] == "int8 pruned+QAT")
    float32 = next(c for c in report["candidates"] if c["name"] == "float32")
    assert int8["raw_bytes"] < 0.35 * float32["raw_bytes"]
    assert int8["metrics"]["accuracy"] > 0.8
    assert all(0.5 < c["metrics"]["f1"] <= 1.0 for c in report["candidates"])
    assert all(c["latency_ms"] > 0 for c in report["candidates"])


def test_keras_size_is_the_float_model_without_optimizer_state(demo_dir):
    out, _ = demo_dir
    report = json.loads((out / "report.json").read_text())
    keras_float = next(c for c in report["candidates"] if c["name"] == "keras float")
    inference = out / "float_inference.keras"
    assert keras_float["raw_bytes"] == inference.stat().st_size
    # The compiled float.keras (kept to resume from) also holds Adam's two
    # moments per weight; the weights-only file is well under that.
    assert inference.stat().st_size < 0.6 * (out / "float.keras").stat().st_size
    with zipfile.ZipFile(inference) as archive:
        assert not json.loads(archive.read("config.json")).get("compile_config")
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
            assert "optimizer" not in weights and "layers" in weights


def test_inspect_reports_int8_tensors_and_sparsity(demo_dir):
    out, _ = demo_dir
    result = _tfcompress("inspect", str(out / "int8_pruned_qat.tflite"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CONV_2D" in result.stdout and "FULLY_CONNECTED" in result.stdout
    assert "input:" in result.stdout and " int8 scale=" in result.stdout
    assert "75.0%" in result.stdout  # the pruned kernels stay sparse in int8
    assert re.search(
        r"XNNPack \(ai_edge_litert\): \d+ of \d+ ops delegated in \d+ partition", result.stdout
    )


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


def test_export_command_writes_a_verified_file(demo_dir, tmp_path):
    out, _ = demo_dir
    target = tmp_path / "pruned_dynamic.tflite"
    result = _tfcompress(
        "export",
        f"--model={out / 'pruned.keras'}",
        "--target=dynamic_int8",
        f"--output={target}",
        "--batch_size=1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert target.stat().st_size > 0
    assert "check outputs_match" in result.stdout
    assert _noise(result) == []
    from tfcompress import runtime

    assert [d["shape_signature"][0] for d in runtime.load(str(target)).input_details] == [1]


@pytest.mark.slow
def test_default_recipe_keeps_the_pruned_and_int8_models_near_float(tmp_path):
    """The demo as shipped: the sparsity ramps up in 2 epochs, 4 recover, QAT keeps the zeros."""
    from tfcompress.cli import demo

    comparison = demo.run_demo(str(tmp_path), bench_rounds=1, bench_runs=1, verbose=0)
    accuracy = {c.name: c.metrics["accuracy"] for c in comparison.candidates}
    assert accuracy["float32"] > 0.98
    # 360 test digits: 1 point is under 4 images.
    assert accuracy["int8 pruned+QAT"] >= accuracy["float32"] - 0.015, accuracy
    assert accuracy["float16 pruned"] >= accuracy["float32"] - 0.03, accuracy
    assert accuracy["dynamic_int8 pruned"] >= accuracy["float32"] - 0.03, accuracy


def test_verbosity_brings_the_converter_logs_back(demo_dir, tmp_path):
    out, _ = demo_dir
    result = _tfcompress(
        "export",
        f"--model={out / 'pruned.keras'}",
        "--target=float32",
        f"--output={tmp_path / 'pruned.tflite'}",
        "--verbosity=0",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Using new converter" in result.stderr and "Assets written to" in result.stderr


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bench_rounds": 0}, r"`bench_rounds` must be an int >= 1. Received: bench_rounds=0"),
        ({"bench_runs": 2.5}, r"`bench_runs` must be an int >= 1. Received: bench_runs=2.5"),
        ({"bench_threads": 0}, r"`bench_threads` must be an int >= 1. Received: bench_threads=0"),
        (
            {"target_sparsity": 1.0},
            r"`target_sparsity` must be in \[0, 1\). Received: target_sparsity=1.0",
        ),
        ({"target_sparsity": "0.5"}, r"`target_sparsity` must be a float in \[0, 1\)"),
    ],
)
def test_bad_bench_arguments_fail_before_training(tmp_path, kwargs, message):
    from tfcompress.cli import demo

    with pytest.raises(ValueError, match=message):
        demo.run_demo(str(tmp_path / "out"), **kwargs)
    assert not (tmp_path / "out").exists()
