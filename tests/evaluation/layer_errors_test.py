import keras
import numpy as np
import pytest

from tfcompress import evaluation

X = np.random.default_rng(0).normal(size=(10, 6)).astype("float32")


def _model(names=("d1", "d2", "out"), seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="relu", name=names[0])(inputs)
    h = keras.layers.Dense(8, activation="tanh", name=names[1])(h)
    return keras.Model(inputs, keras.layers.Dense(3, name=names[2])(h))


def _copy(model):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


class _Passthrough(keras.layers.Wrapper):
    """Stands in for a compression wrapper: runs the wrapped layer unchanged."""

    def call(self, inputs):
        return self.layer(inputs)


def test_copy_with_same_weights_has_zero_error():
    model = _model()
    report = evaluation.layer_errors(model, _copy(model), X, batch_size=4)
    assert list(report.errors) == ["d1", "d2", "out"]
    for stats in report.errors.values():
        assert stats["max_abs"] == 0.0
        assert stats["mean_abs"] == 0.0
        assert stats["relative_l2"] == 0.0
        assert stats["cosine"] == pytest.approx(1.0)
    assert report.skipped == {}


def test_changed_weight_shows_from_its_layer_on():
    model = _model()
    changed = _copy(model)
    kernel = changed.get_layer("d2").kernel
    kernel.assign(kernel.numpy() + 0.5)
    report = evaluation.layer_errors(model, changed, X)
    assert report.errors["d1"]["max_abs"] == 0.0
    assert report.errors["d2"]["max_abs"] > 0.1
    assert report.errors["out"]["relative_l2"] > 0.01
    a = model.get_layer("d2").output
    expected = np.abs(
        keras.Model(model.input, a).predict_on_batch(X)
        - keras.Model(changed.input, changed.get_layer("d2").output).predict_on_batch(X)
    )
    assert report.errors["d2"]["max_abs"] == pytest.approx(expected.max(), rel=1e-6)
    assert report.errors["d2"]["mean_abs"] == pytest.approx(expected.mean(), rel=1e-5)


def test_unmapped_layers_are_skipped_and_reported():
    model = _model()
    other = _model(names=("d1", "renamed", "out"))
    other.set_weights(model.get_weights())
    report = evaluation.layer_errors(model, other, X)
    assert list(report.errors) == ["d1", "out"]
    assert report.skipped == {
        "d2": "model_b has no layer named 'd2'",
        "renamed": "only in model_b",
    }
    assert "renamed: only in model_b" in report.table()
    mapped = evaluation.layer_errors(model, other, X, name_map={"d2": "renamed"})
    assert list(mapped.errors) == ["d1", "d2", "out"]
    assert mapped.errors["d2"]["max_abs"] == 0.0
    by_fn = evaluation.layer_errors(model, other, X, name_map=lambda n: n.replace("d2", "renamed"))
    assert list(by_fn.errors) == ["d1", "d2", "out"]


def test_wrapper_is_matched_by_its_inner_layer_name():
    model = _model()
    inputs = keras.Input((6,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="d1")(inputs)
    h = _Passthrough(keras.layers.Dense(8, activation="tanh", name="d2"), name="wrapped_d2")(h)
    wrapped = keras.Model(inputs, keras.layers.Dense(3, name="out")(h))
    wrapped.set_weights(model.get_weights())
    report = evaluation.layer_errors(model, wrapped, X)
    assert list(report.errors) == ["d1", "d2", "out"]
    assert all(stats["max_abs"] == 0.0 for stats in report.errors.values())


def test_shape_mismatch_and_shared_layers_are_skipped():
    model = _model()
    inputs = keras.Input((6,), name="x")
    h = keras.layers.Dense(4, name="d1")(inputs)
    shared = keras.layers.Dense(4, name="d2")
    other = keras.Model(inputs, keras.layers.Dense(3, name="out")(shared(shared(h))))
    report = evaluation.layer_errors(model, other, X)
    assert list(report.errors) == ["out"]
    assert report.skipped["d1"].startswith("output shapes differ")
    assert "called more than once" in report.skipped["d2"]


def test_table_lists_layers_and_stats():
    model = _model()
    table = evaluation.layer_errors(model, _copy(model), X).table()
    for word in ("layer", "max_abs", "relative_l2", "cosine", "d1", "d2", "out"):
        assert word in table


def test_errors():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    sub = Subclassed()
    sub(X)
    model = _model()
    with pytest.raises(ValueError, match="has no layer graph"):
        evaluation.layer_errors(model, sub, X)
    with pytest.raises(TypeError, match="`model_a` must be a `keras.Model`"):
        evaluation.layer_errors(lambda x: x, model, X)
    with pytest.raises(ValueError, match="No layer of `model_a` maps"):
        evaluation.layer_errors(model, _model(names=("a", "b", "c")), X)
    with pytest.raises(TypeError, match="`name_map` must be a dict or a callable"):
        evaluation.layer_errors(model, model, X, name_map=["d1"])
