import keras
import numpy as np
import pytest

from tfcompress.core import copy_model
from tfcompress.core.recipe import has_recipe
from tfcompress.sparsity import prune_low_magnitude
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers

import testing


@pytest.mark.parametrize(
    "factory",
    [
        testing.sequential_cnn,
        testing.functional_dense,
        testing.subclassed,
        testing.nested,
        testing.bert_backbone,
        testing.net,
    ],
    ids=lambda f: f.__name__,
)
def test_copy_model_keeps_class_and_weights(factory):
    model = factory()
    copy = copy_model(model)
    assert type(copy) is type(model) and copy is not model
    testing.assert_same_weights(model, copy)
    assert not {id(v) for v in model.weights} & {id(v) for v in copy.weights}
    inputs = testing.inputs_for(model) if factory is not testing.net else testing.net_data()[0]
    testing.assert_outputs_close(model(inputs), copy(inputs))


def test_copy_of_an_unregistered_model_is_independent():
    model = testing.net()
    x, _ = testing.net_data()
    before = model(x)
    copy = copy_model(model)
    assert type(copy) is testing.Net
    assert [type(b) for b in copy.blocks] == [testing.NetBlock] * 2
    for variable in copy.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    testing.assert_outputs_close(model(x), before)
    assert np.abs(np.asarray(copy(x))).max() == 0


def test_copy_of_a_compressed_unregistered_model_keeps_its_wrappers():
    pruned = prune_low_magnitude(testing.net(), inplace=True)
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    copy = copy_model(pruned)
    assert type(copy) is type(pruned) and has_recipe(copy)
    assert len(pruning_wrappers(copy)) == len(pruning_wrappers(pruned)) == 5
    testing.assert_same_weights(pruned, copy)


class Scaled(keras.Model):
    """Unregistered, with state set after construction that no config holds."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(2)
        self.scale = 1.0

    def call(self, inputs):
        return self.dense(inputs) * self.scale


def test_copy_that_computes_differently_is_refused():
    model = Scaled()
    model(np.ones((1, 3), "float32"))
    model.scale = 3.0
    with pytest.raises(
        TypeError, match=r"computes different outputs.*register the class.*inplace=True"
    ):
        copy_model(model)


class NoArguments(keras.Model):
    """Unregistered, and its `__init__` takes no arguments (not even `**kwargs`)."""

    def __init__(self):
        super().__init__()
        self.d = keras.layers.Dense(3, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.d(x))


class Sized(keras.Model):
    """Unregistered; takes its width, but no `**kwargs` for Keras's `trainable` and `dtype`."""

    def __init__(self, units=4):
        super().__init__()
        self.d = keras.layers.Dense(units)

    def call(self, x):
        return self.d(x)


def test_copy_of_a_model_whose_init_takes_no_config():
    x = np.random.default_rng(0).normal(size=(4, 5)).astype("float32")
    for model in (NoArguments(), Sized()):
        model(x)
        copy = copy_model(model)
        assert type(copy) is type(model) and copy is not model
        assert not {id(v) for v in model.weights} & {id(v) for v in copy.weights}
        testing.assert_same_weights(model, copy)
        testing.assert_outputs_close(model(x), copy(x))
    # Keras records a subclassed model's `__init__` defaults, not the values
    # passed: the copy would be narrower, and is refused.
    model = Sized(units=6)
    model(x)
    with pytest.raises(TypeError, match=r"does not have the original's weights.*inplace=True"):
        copy_model(model)


def test_model_whose_init_takes_no_config_is_pruned_and_quantized_as_a_copy():
    from tfcompress.quantization import quantize_annotate_model, quantize_apply

    model = NoArguments()
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    before = np.asarray(model(x))
    kernels = [np.copy(v.numpy()) for v in model.weights]
    pruned = prune_low_magnitude(model)
    for wrapper in pruning_wrappers(pruned):
        wrapper.update_masks(0.5)
    assert type(pruned).__name__ == "NoArguments" and len(pruning_wrappers(pruned)) == 2
    pruned_kernel = np.asarray(pruning_wrappers(pruned)[0].layer.kernel)
    assert np.mean(pruned_kernel == 0) == 0.5
    quantized = quantize_apply(quantize_annotate_model(model))
    assert type(quantized).__name__ == "NoArguments" and quantized is not model
    assert np.abs(np.asarray(quantized(x)) - before).max() < 0.1 * np.abs(before).max()
    # The user's model is untouched by both.
    for variable, kernel in zip(model.weights, kernels):
        np.testing.assert_array_equal(variable.numpy(), kernel)
    np.testing.assert_array_equal(np.asarray(model(x)), before)


def test_copy_model_of_unserializable_model_explains():
    class Variadic(keras.Model):
        def __init__(self, *sizes):  # Keras cannot record variadic arguments in a config
            super().__init__()
            self.dense = keras.layers.Dense(sizes[0])

        def call(self, x):
            return self.dense(x)

    model = Variadic(2)
    model(np.ones((1, 3)))
    with pytest.raises(
        TypeError,
        match=r"Could not copy model 'variadic' \(Variadic\): rebuilding it from its "
        r"config failed.*register the class.*or pass `inplace=True`",
    ):
        copy_model(model)


class Classifier(keras.Model):
    """Unregistered, built around a layer passed in, as users wrap a backbone."""

    def __init__(self, body, **kwargs):
        super().__init__(**kwargs)
        self.body = body
        self.head = keras.layers.Dense(2)

    def call(self, inputs):
        return self.head(self.body(inputs))


def test_model_built_around_a_passed_layer_is_refused_then_pruned_inplace():
    model = Classifier(keras.layers.Dense(4))
    model(np.ones((1, 3), "float32"))
    with pytest.raises(
        TypeError, match=r"non-serializable argument.*register the class.*inplace=True"
    ):
        prune_low_magnitude(model)
    assert prune_low_magnitude(model, inplace=True) is model
    assert len(pruning_wrappers(model)) == 2


def test_functional_model_with_a_python_lambda_copies():
    """A user's `Lambda(lambda t: ...)` layer: Keras's safe mode guards files, not live models."""
    inputs = keras.Input((16,))
    hidden = keras.layers.Dense(32, activation="relu")(inputs)
    hidden = keras.layers.Lambda(lambda t: t * 2.0)(hidden)
    model = keras.Model(inputs, keras.layers.Dense(4)(hidden))
    copy = copy_model(model)
    assert copy is not model and copy.layers[2] is not model.layers[2]
    x = np.random.default_rng(0).normal(size=(8, 16)).astype("float32")
    np.testing.assert_allclose(copy(x), model(x), rtol=1e-6)


def test_copy_keeps_the_layer_names_that_paths_are_made_of():
    from tfcompress.core import walk_layers
    from tfcompress.low_rank import LowRankDense, factorize

    x = np.random.default_rng(0).normal(size=(4, 4)).astype("float32")
    model = NoArguments()
    model(x)
    copy = copy_model(model)
    assert [r.path for r in walk_layers(copy)] == [r.path for r in walk_layers(model)]
    # A path-based technique on a copy of such a model finds its layers.
    factorized = factorize(model, rank=1)
    assert type(factorized).__name__ == "NoArguments"
    assert any(isinstance(r.layer, LowRankDense) for r in walk_layers(factorized))
