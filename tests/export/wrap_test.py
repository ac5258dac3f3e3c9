import keras
import numpy as np
import pytest

from tfcompress import export, runtime
from tfcompress.export import wrap

import testing


def test_functional_model_keeps_its_input_names(dense_model):
    wrapper, specs = wrap.functional_wrapper(dense_model)
    assert [tuple(s) for s in specs] == [("features", (None, 32), "float32")]
    x = np.random.default_rng(0).random((3, 32), dtype=np.float32)
    np.testing.assert_allclose(wrapper(x), dense_model(x), rtol=1e-6)
    assert wrap.output_names(wrapper.outputs[0]) == ["output_0"]


def test_keras_hub_backbone_gets_dict_keys_as_inputs(bert_backbone, bert_inputs):
    wrapper, specs = wrap.functional_wrapper(bert_backbone)
    assert sorted(s.name for s in specs) == ["padding_mask", "segment_ids", "token_ids"]
    assert all(s.dtype == "int32" and s.shape == (None, None) for s in specs)
    sample = bert_inputs(n=2)
    outputs = wrap.reference_outputs(wrapper, specs, sample)
    expected = bert_backbone(sample)
    assert set(outputs) == {"sequence_output", "pooled_output"}
    for name, value in outputs.items():
        np.testing.assert_allclose(value, expected[name].numpy(), rtol=1e-5, atol=1e-6)


def test_bert_backbone_exports_float32_and_dynamic_int8(bert_backbone, bert_inputs):
    sample = bert_inputs(n=4, seed=3)
    reference = bert_backbone(sample)
    for target, tolerance in (("float32", 1e-5), ("dynamic_int8", 0.02)):
        result = export.to_tflite(bert_backbone, target=target, sample=sample)
        assert all(check["passed"] for check in result.checks.values()), result.checks
        # The weights are in the file: from_concrete_functions lost them.
        assert result.size_bytes > bert_backbone.count_params() * (4 if target == "float32" else 1)
        model = runtime.load(result.tflite_bytes)
        assert set(model.signatures["serving_default"]["inputs"]) == set(sample)
        outputs = model.run(sample)
        assert set(outputs) == {"sequence_output", "pooled_output"}
        for name, value in outputs.items():
            expected = reference[name].numpy()
            assert value.shape == expected.shape
            error = np.max(np.abs(value - expected)) / np.max(np.abs(expected))
            assert error < tolerance, (target, name, error)


def test_subclassed_model_uses_its_build_shape_or_the_sample():
    keras.utils.set_random_seed(0)
    model = testing.TwoDense()
    with pytest.raises(ValueError, match="is not built"):
        wrap.functional_wrapper(model)
    model(np.zeros((1, 6), np.float32))
    _, specs = wrap.functional_wrapper(model)
    assert [tuple(s) for s in specs] == [("input", (None, 6), "float32")]

    sample = np.random.default_rng(0).random((5, 6), dtype=np.float32)
    result = export.to_tflite(model, sample=sample)
    assert result.checks["outputs_match"]["passed"]
    np.testing.assert_allclose(
        runtime.load(result.tflite_bytes).run(sample),
        model(sample).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_subclassed_model_with_dict_inputs_needs_a_sample():
    class Pair(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(keras.ops.concatenate([inputs["a"], inputs["b"]], axis=-1))

    model = Pair()
    sample = {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 1), np.float32)}
    model(sample)
    with pytest.raises(ValueError, match="Pass `sample=`"):
        wrap.functional_wrapper(model)
    wrapper, specs = wrap.functional_wrapper(model, sample)
    assert [(s.name, s.shape) for s in specs] == [("a", (None, 3)), ("b", (None, 1))]
    np.testing.assert_allclose(
        wrap.reference_outputs(wrapper, specs, sample)["output_0"],
        model(sample).numpy(),
    )


def test_names_are_made_unique_and_valid():
    first = keras.Input((2,), name="x")
    second = keras.Input((2,), name="9 lives")
    model = keras.Model([first, second], keras.layers.Add()([first, second]))
    _, specs = wrap.functional_wrapper(model)
    assert [s.name for s in specs] == ["x", "input_9_lives"]


def test_untraceable_models_report_the_tracing_error():
    class _Hidden(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = _Hidden()  # Keras names it "__hidden", which is no valid TF scope
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="`model` is named '_+hidden'.*Name the model"):
        export.to_tflite(model)
    # Nothing was traced, so later layers get clean variable paths.
    fresh = keras.layers.Dense(1, name="fresh")
    fresh.build((None, 2))
    assert fresh.kernel.path == "fresh/kernel"


def test_output_names_follow_the_tflite_signature():
    assert wrap.output_names({"a": 1, "b": 2}) == ["a", "b"]
    assert wrap.output_names([1, 2]) == ["output_0", "output_1"]
    assert wrap.output_names(1) == ["output_0"]
