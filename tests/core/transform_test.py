import keras
import numpy as np
import pytest

import testing
from tfcompress.core import walk_layers
from tfcompress.core.recipe import has_recipe
from tfcompress.core.transform import copy_model, transform_layers
from tfcompress.sparsity import PruneLowMagnitude


@pytest.mark.parametrize(
    "factory",
    [testing.sequential_cnn, testing.functional_dense, testing.subclassed,
     testing.nested, testing.bert_backbone],
    ids=lambda f: f.__name__,
)
def test_copy_model_keeps_class_and_weights(factory):
    model = factory()
    copy = copy_model(model)
    assert type(copy) is type(model) and copy is not model
    testing.assert_same_weights(model, copy)
    assert not {id(v) for v in model.weights} & {id(v) for v in copy.weights}
    inputs = testing.inputs_for(model)
    testing.assert_outputs_close(model(inputs), copy(inputs))


def test_copy_model_of_unserializable_model_explains():
    class Anonymous(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Anonymous()
    model(np.ones((1, 3)))
    with pytest.raises(TypeError, match="Could not copy model.*inplace=True"):
        copy_model(model)


def _wrap_dense(ref):
    if isinstance(ref.layer, keras.layers.Dense):
        wrapper = PruneLowMagnitude(ref.layer)
        wrapper.build(None)
        return wrapper
    return None


def test_transform_layers_copies_and_reports_paths():
    model = testing.nested()
    new, replaced = transform_layers(model, _wrap_dense)
    assert new is not model and type(new) is type(model)
    assert [r.path for r in replaced] == [
        "inner_model/inner_dense", "block/inner", "block/outer", "head"]
    assert not any(isinstance(r.layer, PruneLowMagnitude) for r in walk_layers(model))
    # A custom Block's sublayers are not in any config: a recipe records them.
    assert has_recipe(new)


def test_transform_layers_inplace_and_config_driven_models():
    model = testing.functional_dense()
    new, replaced = transform_layers(model, _wrap_dense, inplace=True)
    assert new is model and len(replaced) == 3
    assert not has_recipe(model)  # its own config holds the wrappers


def test_transform_layers_refuses_tf_keras_and_unbuilt():
    class FakeTfKeras:
        pass

    FakeTfKeras.__module__ = "tf_keras.src.models"
    with pytest.raises(TypeError, match="received a `tf_keras`"):
        transform_layers(FakeTfKeras(), _wrap_dense)
    with pytest.raises(ValueError, match="is not built"):
        transform_layers(keras.Sequential([keras.layers.Dense(2)]), _wrap_dense)
    with pytest.raises(TypeError, match=r"must be a `keras.Model`.*Dense"):
        transform_layers(keras.layers.Dense(2), _wrap_dense)
