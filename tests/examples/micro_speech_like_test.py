"""Runs examples/micro_speech_like.py end to end with tiny flags."""

import re

import pytest

import testing

# A whole example run in a subprocess: in the slow tier, which CI runs too.
pytestmark = pytest.mark.slow


def test_keyword_model_is_pruned_quantized_and_measured_in_tflm(tmp_path):
    pytest.importorskip("tflite_micro", reason="needs tflite-micro: pip install -e '.[micro]'")
    out_dir = tmp_path / "out"
    flags = [
        "--clips_per_label=6",
        "--filters=8",
        "--blocks=1",
        "--float_epochs=1",
        "--prune_epochs=1",
        "--qat_epochs=1",
        f"--output_dir={out_dir}",
    ]
    result = testing.run_example("micro_speech_like.py", tmp_path, *flags)
    stdout = result.stdout

    assert (
        "[data] 57 training / 15 test synthetic clips, 12 labels, MFCC features (49, 10)" in stdout
    )
    sparsity = float(re.search(r"overall sparsity (\d\.\d+)", stdout).group(1))
    assert abs(sparsity - 0.5) <= 0.01
    flash = int(
        re.search(r"flash ([\d,]+) bytes \(the model array\)", stdout).group(1).replace(",", "")
    )
    assert flash == (out_dir / "kws_int8.tflite").stat().st_size
    arena, total, minimum = (
        int(group.replace(",", ""))
        for group in re.search(
            r"tensor arena ([\d,]+) bytes: TFLM measured ([\d,]+) .*smallest arena it loads in ([\d,]+)\)",
            stdout,
        ).groups()
    )
    assert max(total, minimum) <= arena <= 1.25 * max(total, minimum)
    lsb = int(re.search(r"outputs vs LiteRT max (\d+) LSB", stdout).group(1))
    assert lsb <= 1
    assert re.search(
        r"\[budget\] flash +[\d.]+ KB vs MLPerf Tiny model limit 512 KB: within", stdout
    )
    assert re.search(
        r"\[budget\] arena \(measured in TFLM\) +[\d.]+ KB vs TFLM micro_speech RAM 10 KB", stdout
    )
    header = (out_dir / "kws_model.h").read_text()
    assert f"constexpr unsigned int kws_model_arena_size = {arena};" in header
    assert "kws_model_resolver.AddDepthwiseConv2D();" in header
    for stage in ("float.keras", "pruned.keras", "qat.keras", "kws_model.cc"):
        assert (out_dir / stage).stat().st_size > 0, stage
    assert not (tmp_path / "tfcompress_out").exists()

    # A rerun in the same directory reuses the saved stages instead of training.
    rerun = testing.run_example("micro_speech_like.py", tmp_path, *flags)
    for stage in ("float.keras", "pruned.keras", "qat.keras"):
        assert f"reusing {out_dir / stage}" in rerun.stdout
    assert f"flash {flash:,} bytes (the model array)" in rerun.stdout
