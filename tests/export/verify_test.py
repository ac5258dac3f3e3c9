import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress import export
from tfcompress.export import converter, verify, wrap


def _float32(model):
    wrapper, specs = wrap.functional_wrapper(model)
    sample = {specs[0].name: np.random.default_rng(0).random((4, 32), dtype=np.float32)}
    content = converter.convert(wrapper, "float32")
    return content, sample, wrap.reference_outputs(wrapper, specs, sample)


def test_all_checks_pass_on_a_good_export(dense_model):
    content, sample, reference = _float32(dense_model)
    checks = verify.run_checks(content, "float32", dense_model.count_params(), sample, reference)
    assert [name for name, check in checks.items() if check["passed"]] == list(verify.CHECKS)
    assert checks["outputs_match"]["max_relative_error"] < 1e-5
    verify.raise_on_failure(checks)


def test_flex_ops_fail_builtin_ops_unless_allowed():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Lambda(lambda x: tf.math.cumprod(x, axis=-1)),
            keras.layers.Dense(2),
        ]
    )
    result = export.to_tflite(model, allow_flex=True)
    assert result.checks["builtin_ops"]["passed"]
    assert result.checks["builtin_ops"]["flex_ops"] == ["FlexCumprod"]
    # No installed interpreter has the Flex delegate: the comparison is skipped.
    assert result.checks["outputs_match"]["passed"] is None
    assert "Flex delegate" in result.checks["outputs_match"]["detail"]

    checks = {"builtin_ops": verify.check_ops(result.tflite_bytes, allow_flex=False)}
    with pytest.raises(
        export.ExportVerificationError, match=r"\['builtin_ops'\].*FlexCumprod"
    ) as info:
        verify.raise_on_failure(checks)
    assert info.value.failed == ["builtin_ops"]
    assert isinstance(info.value, ValueError)


def test_a_weightless_file_fails_weights_present(monkeypatch, dense_model):
    keras.utils.set_random_seed(1)
    big = keras.Sequential([keras.Input((32,)), keras.layers.Dense(2000), keras.layers.Dense(10)])
    # Simulate the from_concrete_functions failure: a valid file without the weights.
    small = _float32(dense_model)[0]
    monkeypatch.setattr(converter, "convert", lambda *args, **kwargs: small)
    with pytest.raises(
        export.ExportVerificationError, match="weights_present.*weights are missing"
    ) as info:
        export.to_tflite(big)
    assert "weights_present" in info.value.failed
    assert info.value.checks["weights_present"]["min_bytes"] == int(0.5 * big.count_params() * 4)


def test_an_output_mismatch_fails_outputs_match(dense_model):
    content, sample, reference = _float32(dense_model)
    shifted = {name: value + 0.1 for name, value in reference.items()}
    checks = verify.run_checks(content, "float32", dense_model.count_params(), sample, shifted)
    assert checks["builtin_ops"]["passed"] and checks["weights_present"]["passed"]
    with pytest.raises(
        export.ExportVerificationError,
        match=r"\['outputs_match'\]: outputs_match: max_relative_error",
    ) as info:
        verify.raise_on_failure(checks)
    assert info.value.failed == ["outputs_match"]
    assert checks["outputs_match"]["max_abs_error"] == pytest.approx(0.1, rel=1e-4)


def test_tolerance_overrides_the_default(dense_model):
    with pytest.raises(
        export.ExportVerificationError, match="cosine_distance .* > tolerance 1e-12"
    ):
        export.to_tflite(dense_model, target="dynamic_int8", tolerance=1e-12)
    result = export.to_tflite(dense_model, target="dynamic_int8", tolerance=0.5)
    assert result.checks["outputs_match"]["tolerance"] == 0.5


def test_unrunnable_or_nan_outputs_fail(dense_model):
    content, sample, reference = _float32(dense_model)
    broken = content[:100]
    check = verify.check_outputs(broken, "float32", sample, reference)
    assert check["passed"] is False and "cannot load" in check["detail"]
    nan = {name: np.full_like(value, np.nan) for name, value in reference.items()}
    with pytest.raises(ValueError, match="NaN"):
        verify.compare(nan, reference)


def test_compare_metrics():
    reference = {"y": np.array([[1.0, 0.0], [0.0, 2.0]])}
    outputs = {"y": np.array([[1.0, 0.5], [0.0, 2.0]])}
    metrics = verify.compare(outputs, reference)
    assert metrics["max_abs_error"] == pytest.approx(0.5)
    assert metrics["max_relative_error"] == pytest.approx(0.25)
    assert metrics["cosine_similarity"] == pytest.approx(5 / np.sqrt(5.25) / np.sqrt(5))
    assert metrics["argmax_agreement"] == 1.0
    flipped = {"y": np.array([[0.0, 1.0], [0.0, 2.0]])}
    assert verify.compare(flipped, reference)["argmax_agreement"] == 0.5


def test_padded_positions_are_left_out_of_per_token_outputs():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 4, 3))
    pooled = rng.normal(size=(2, 3))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    sample = {"token_ids": np.zeros((2, 4), "int32"), "padding_mask": mask}
    assert verify.padding_mask(sample) is mask
    reference = {"sequence_output": hidden, "pooled_output": pooled}
    padded_garbage = {"sequence_output": hidden.copy(), "pooled_output": pooled}
    padded_garbage["sequence_output"][1, 2:] = 100.0
    assert verify.compare(padded_garbage, reference, mask)["cosine_similarity"] == pytest.approx(
        1.0
    )
    assert verify.compare(padded_garbage, reference)["cosine_similarity"] < 0.5
    wrong_token = {"sequence_output": hidden.copy(), "pooled_output": pooled}
    wrong_token["sequence_output"][1, 1] = 100.0  # a real token
    assert verify.compare(wrong_token, reference, mask)["cosine_similarity"] < 0.5


def test_mask_positions_are_not_taken_for_a_padding_mask():
    # keras-hub masked LMs: `mask_positions` (indices) sorts before `padding_mask`.
    rng = np.random.default_rng(0)
    padding = np.ones((2, 6), "int32")
    positions = np.array([[0, 3], [2, 4]], "int32")
    sample = {
        "mask_positions": positions,
        "padding_mask": padding,
        "token_ids": np.zeros((2, 6), "int32"),
    }
    assert verify.padding_mask(sample) is padding
    logits = rng.normal(size=(2, 2, 5))
    wrong_first = logits.copy()
    wrong_first[0, 0] = -logits[0, 0]  # the prediction at position 0
    mask = verify.padding_mask(sample)
    assert verify.compare({"logits": wrong_first}, {"logits": logits}, mask)["max_abs_error"] > 0
    assert (
        verify.padding_mask({"mask_positions": positions, "token_ids": np.zeros((2, 6), "int32")})
        is None
    )


def test_a_mask_unlike_the_token_ids_is_no_padding_mask():
    mask = np.array([[1, 0], [1, 1]], "int32")
    assert verify.padding_mask({"token_ids": np.zeros((2, 6), "int32"), "mask": mask}) is None
    assert verify.padding_mask({"mask": mask}) is None


def test_pooled_outputs_as_wide_as_the_sequence_are_compared_whole():
    # (batch, hidden) with hidden == sequence length: not a per-token output.
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    pooled = rng.normal(size=(2, 4))
    wrong = pooled.copy()
    wrong[1, 3] += 10.0  # a real feature of the second example
    assert verify.compare({"pooled_output": wrong}, {"pooled_output": pooled}, mask)[
        "max_abs_error"
    ] == pytest.approx(10.0)


def test_argmax_agreement_counts_real_tokens_only():
    rng = np.random.default_rng(0)
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], "int32")
    logits = rng.normal(size=(2, 4, 3))
    wrong = logits.copy()
    wrong[0, 0] = -logits[0, 0]  # a different argmax at one of the 6 real tokens
    assert verify.compare({"logits": wrong}, {"logits": logits}, mask)[
        "argmax_agreement"
    ] == pytest.approx(5 / 6)


def test_a_padding_mask_next_to_float_embeddings_is_found():
    mask = np.array([[1, 1, 0], [1, 0, 0]], "int32")
    sample = {"embeddings": np.zeros((2, 3, 5), "float32"), "padding_mask": mask}
    assert verify.padding_mask(sample) is mask
