import keras
import numpy as np
import pytest

import tfcompress
from tfcompress.core import CompressionWrapper, strip_wrappers, transform_layers
from tfcompress.core.recipe import has_recipe

import testing


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class ScaleKernel(CompressionWrapper):
    """A technique written outside tfcompress: the layer runs with 2 x kernel."""

    def substitutions(self, training):
        return [(self.layer.kernel, self.layer.kernel * 2.0)]


@keras.saving.register_keras_serializable(package="tfcompress_tests")
class LearnedRange(CompressionWrapper):
    """A wrapper whose own state the export needs: kept by default."""

    carries_learned_ranges = True


def _scaled(model, cls=ScaleKernel):
    def wrap(ref):
        if isinstance(ref.layer, keras.layers.Dense):
            wrapper = cls(ref.layer)
            wrapper.build(tfcompress.core.build_shape_of(ref.layer))
            return wrapper
        return None

    return transform_layers(model, wrap)[0]


def test_toy_technique_strips_saves_and_exports(tmp_path):
    model = testing.subclassed()
    inputs = testing.inputs_for(model)
    scaled = _scaled(model)
    assert isinstance(scaled.block.inner, ScaleKernel) and has_recipe(scaled)
    expected = testing.outputs_numpy(scaled(inputs))
    assert not np.allclose(expected[0], testing.outputs_numpy(model(inputs))[0])
    testing.run_model_saving_test(scaled, inputs, tmp_path, name="scaled")

    stripped = strip_wrappers(scaled)
    assert type(stripped) is testing.Subclassed and not has_recipe(stripped)
    assert isinstance(stripped.block.inner, keras.layers.Dense)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(stripped.head.kernel),
        2 * keras.ops.convert_to_numpy(model.head.kernel),
    )
    testing.assert_outputs_close(expected, stripped(inputs))
    restored = testing.run_model_saving_test(stripped, inputs, tmp_path, name="stripped")
    assert type(restored) is testing.Subclassed
    exported = tfcompress.export.to_tflite(stripped, "float32", sample=inputs)
    assert exported.checks["outputs_match"]["passed"]
    lite = tfcompress.runtime.load(exported.tflite_bytes).run(inputs)
    np.testing.assert_allclose(np.asarray(lite), expected[0], atol=1e-5)
    # The export strips the technique itself: no library code knows ScaleKernel.
    direct = tfcompress.export.to_tflite(scaled, "float32", sample=inputs)
    assert direct.checks["outputs_match"]["passed"]
    lite = tfcompress.runtime.load(direct.tflite_bytes).run(inputs)
    np.testing.assert_allclose(np.asarray(lite), expected[0], atol=1e-5)


def test_learned_ranges_are_kept_unless_asked():
    model = _scaled(testing.functional_dense(), LearnedRange)
    kept = strip_wrappers(model)
    assert sum(isinstance(layer, LearnedRange) for layer in kept.layers) == 3
    gone = strip_wrappers(model, keep_learned_ranges=False)
    assert not [
        r for r in tfcompress.core.walk_layers(gone) if isinstance(r.layer, CompressionWrapper)
    ]


def test_nested_wrappers_and_a_single_wrapper():
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    before = keras.ops.convert_to_numpy(dense.kernel)
    outer = LearnedRange(ScaleKernel(dense))
    outer.build((None, 3))
    assert strip_wrappers(outer) is outer
    assert strip_wrappers(outer, keep_learned_ranges=False) is dense
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense.kernel), 2 * before, rtol=1e-6)
    with pytest.raises(TypeError, match="`model` must be a Keras 3"):
        strip_wrappers("model")


def test_has_strippable_wrappers_follows_keep_learned_ranges():
    from tfcompress.core.strip_wrappers import has_strippable_wrappers

    assert not has_strippable_wrappers(testing.functional_dense())
    assert has_strippable_wrappers(_scaled(testing.functional_dense()))
    learned = _scaled(testing.functional_dense(), LearnedRange)
    assert not has_strippable_wrappers(learned)
    assert has_strippable_wrappers(learned, keep_learned_ranges=False)
