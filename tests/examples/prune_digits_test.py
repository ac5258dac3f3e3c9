"""Runs examples/prune_digits.py end to end with tiny flags."""

import re

import pytest

import testing


def test_prune_digits_reaches_target_and_exports_tflite(tmp_path):
    out_dir = tmp_path / "out"
    result = testing.run_example(
        "prune_digits.py",
        tmp_path,
        "--target_sparsity=0.75",
        "--float_epochs=1",
        "--prune_epochs=1",
        "--recover_epochs=1",
        "--frequency=4",
        "--batch_size=128",
        f"--output_dir={out_dir}",
        timeout=180,
    )

    match = re.search(r"overall sparsity (\d\.\d+)", result.stdout)
    assert match, result.stdout
    assert abs(float(match.group(1)) - 0.75) <= 0.005
    for stage in ("[data]", "[float]", "[prune]", "[evaluate]", "[tflite]", "[save]"):
        assert stage in result.stdout
    tflite = out_dir / "pruned.tflite"
    assert tflite.is_file() and tflite.stat().st_size > 10_000
    assert (out_dir / "pruned.keras").is_file()
    assert not (tmp_path / "tfcompress_out").exists()


@pytest.mark.slow
def test_shipped_flagfile_keeps_the_pruned_cnn_near_float(tmp_path):
    """The recipe of the flagfile: ramp over 4 epochs, 12 at 80%, masks every 10 steps."""
    result = testing.run_example(
        "prune_digits.py", tmp_path, f"--output_dir={tmp_path / 'out'}", timeout=900
    )
    match = re.search(r"\[evaluate\] test accuracy (\d\.\d+) \(float (\d\.\d+)\)", result.stdout)
    assert match, result.stdout
    pruned, float_accuracy = float(match.group(1)), float(match.group(2))
    assert float_accuracy > 0.96
    # 450 test digits: 1.5 points is under 7 images.
    assert pruned >= float_accuracy - 0.015, (pruned, float_accuracy)
