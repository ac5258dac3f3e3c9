import keras
import pytest

from tfcompress.core import walk_layers
from tfcompress.core.recipe import has_recipe
from tfcompress.core.transform import transform_layers
from tfcompress.sparsity import PruneLowMagnitude

import testing


def _wrap_dense(ref):
    if isinstance(ref.layer, keras.layers.Dense):
        wrapper = PruneLowMagnitude(ref.layer)
        wrapper.build(None)
        return wrapper
    return None


def test_transform_layers_copies_and_reports_paths():
    model = testing.nested()
    new, replaced = transform_layers(model, _wrap_dense)
    assert new is not model
    testing.assert_keeps_class(new, model)
    assert [r.path for r in replaced] == [
        "inner_model/inner_dense",
        "block/inner",
        "block/outer",
        "head",
    ]
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
