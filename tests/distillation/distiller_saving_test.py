"""Saving a Distiller and resuming its training; the student alone; config round trips."""

import keras
import numpy as np
import pytest

from distillation.distiller_test import _digits, _mlp
from tfcompress.distillation import Distiller


@pytest.fixture(scope="module")
def data():
    x, y = _digits()
    return x[:256], y[:256]


@pytest.fixture(scope="module")
def teacher(data):
    model = _mlp(64, "teacher", dropout=0.2)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*data, epochs=2, verbose=0)
    return model


def _compiled(teacher):
    distiller = Distiller(_mlp(16, "student", seed=7), teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        metrics=["accuracy"],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=0.25,
        temperature=2.5,
        feature_losses=[("hidden", "hidden", "cosine", 0.5)],
    )
    return distiller


def _state(distiller):
    return [w.numpy() for w in distiller.trainable_weights] + [
        v.numpy() for v in distiller.optimizer.variables
    ]


def test_checkpoint_resumes_where_training_stopped(data, teacher, tmp_path):
    initial = _compiled(teacher)
    initial.evaluate(*data, verbose=0)  # creates the projection
    initial.save(tmp_path / "initial.keras")

    straight = keras.saving.load_model(tmp_path / "initial.keras")
    straight.fit(*data, epochs=2, batch_size=32, shuffle=False, verbose=0)

    first = keras.saving.load_model(tmp_path / "initial.keras")
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "epoch.keras"))
    first.fit(*data, epochs=1, batch_size=32, shuffle=False, verbose=0, callbacks=[checkpoint])
    resumed = keras.saving.load_model(tmp_path / "epoch.keras")
    assert int(resumed.optimizer.iterations.numpy()) == 8
    assert [w.path for w in resumed.trainable_weights] == [
        w.path for w in straight.trainable_weights
    ]
    assert any("projection" in w.path for w in resumed.trainable_weights)
    resumed.fit(*data, epochs=1, batch_size=32, shuffle=False, verbose=0)

    for a, b in zip(_state(straight), _state(resumed), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(
        resumed.teacher.get_layer("hidden").kernel.numpy(),
        teacher.get_layer("hidden").kernel.numpy(),
    )


def test_compile_settings_survive_a_save(data, teacher, tmp_path):
    distiller = _compiled(teacher)
    expected = distiller.evaluate(*data, batch_size=256, verbose=0, return_dict=True)
    distiller.save(tmp_path / "distiller.keras")
    restored = keras.saving.load_model(tmp_path / "distiller.keras")
    assert type(restored) is Distiller
    assert restored.teacher.trainable is False
    result = restored.evaluate(*data, batch_size=256, verbose=0, return_dict=True)
    assert result.keys() == expected.keys()
    for name in expected:
        assert result[name] == pytest.approx(expected[name], abs=1e-6), name


def test_student_saves_alone_as_an_ordinary_model(data, teacher, tmp_path):
    distiller = _compiled(teacher)
    distiller.fit(*data, epochs=1, verbose=0)
    distiller.student.save(tmp_path / "student.keras")
    student = keras.saving.load_model(tmp_path / "student.keras")
    assert type(student) is type(distiller.student)
    assert [w.path for w in student.weights] == [w.path for w in distiller.student.weights]
    np.testing.assert_allclose(
        student.predict(data[0], verbose=0), distiller.predict(data[0], verbose=0), atol=1e-6
    )


def test_config_round_trip(teacher):
    distiller = Distiller(_mlp(16, "student"), teacher, name="kd")
    config = distiller.get_config()
    restored = Distiller.from_config(config)
    assert restored.name == "kd"
    assert restored.student.get_config() == distiller.student.get_config()
    assert restored.teacher.get_config() == distiller.teacher.get_config()
    assert restored.get_config()["student"] == config["student"]


def test_keras_hub_language_model_distiller_round_trip(tmp_path):
    from distillation.distiller_lm_test import gpt2

    teacher, student = gpt2(num_layers=2, hidden_dim=16), gpt2(num_layers=1, hidden_dim=8, seed=1)
    distiller = Distiller(student, teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        temperature=2.0,
        feature_losses=[("transformer_layer_1", "transformer_layer_0", "cosine")],
    )
    rng = np.random.default_rng(0)
    x = {
        "token_ids": rng.integers(1, 29, (8, 8)).astype("int32"),
        "padding_mask": np.ones((8, 8), "int32"),
    }
    distiller.fit(x, epochs=1, batch_size=4, verbose=0)
    expected = distiller.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    distiller.save(tmp_path / "lm.keras")
    restored = keras.saving.load_model(tmp_path / "lm.keras")
    assert type(restored.student) is type(student)
    result = restored.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    for name in ("loss", "distillation_loss", "feature_loss"):
        assert result[name] == pytest.approx(expected[name], abs=1e-5), name
    assert int(restored.optimizer.iterations.numpy()) == 2


@keras.saving.register_keras_serializable(package="tfcompress_tests")
def mean_gap(teacher_features, student_features, mask):
    """A user's own feature loss: the gap between mean activations."""
    return keras.ops.square(keras.ops.mean(teacher_features) - keras.ops.mean(student_features))


def test_a_registered_callable_feature_loss_saves_and_reloads(data, teacher, tmp_path):
    distiller = Distiller(_mlp(16, "student", seed=8), teacher)
    distiller.compile(feature_losses=[("hidden", "hidden", mean_gap, 3.0)])
    before = distiller.evaluate(*data, batch_size=256, verbose=0, return_dict=True)
    t = keras.ops.convert_to_numpy(
        keras.Model(teacher.inputs, teacher.get_layer("hidden").output)(data[0])
    )
    s = keras.ops.convert_to_numpy(
        keras.Model(distiller.student.inputs, distiller.student.get_layer("hidden").output)(data[0])
    )
    assert before["feature_loss"] == pytest.approx((t.mean() - s.mean()) ** 2, rel=1e-4)
    assert not distiller._projections.layers_by_key  # widths 64 and 16 go to the callable
    distiller.save(tmp_path / "callable.keras")
    loaded = keras.saving.load_model(tmp_path / "callable.keras")
    assert loaded._pairs[0].loss is mean_gap and loaded._pairs[0].weight == 3.0
    after = loaded.evaluate(*data, batch_size=256, verbose=0, return_dict=True)
    assert after["feature_loss"] == pytest.approx(before["feature_loss"], abs=1e-7)


class UserBlock(keras.layers.Layer):
    """Written as users write them: generated sublayer names, not registered."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = keras.layers.Dense(units, activation="relu")
        self.norm = keras.layers.LayerNormalization()

    def call(self, inputs):
        return self.norm(self.dense(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class UserNet(keras.Model):
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.blocks = [UserBlock(units), UserBlock(units)]
        self.head = keras.layers.Dense(10)

    def call(self, inputs):
        for block in self.blocks:
            inputs = block(inputs)
        return self.head(inputs)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_subclassed_models_with_generated_names_resume_the_same_pairs(data, tmp_path):
    x, y = data
    teacher = UserNet(32)
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, epochs=1, verbose=0)
    student = UserNet(8)
    student(x[:1])
    distiller = Distiller(student, teacher)
    # Attribute paths: the two models' generated layer names differ.
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        feature_losses=[("blocks.1", "blocks.1", "mse"), ("blocks.0/dense", "blocks/0/dense")],
    )
    assert distiller._pair_layers == (
        [teacher.blocks[1], teacher.blocks[0].dense],
        [student.blocks[1], student.blocks[0].dense],
    )
    distiller.fit(x, epochs=1, batch_size=64, verbose=0)
    distiller.save(tmp_path / "distiller.keras")
    objects = {"UserNet": UserNet, "UserBlock": UserBlock}

    # Loaded in the same process, every layer gets a new generated name, so
    # the saved paths name no layer: the pairs are found by position.
    resumed = keras.saving.load_model(tmp_path / "distiller.keras", custom_objects=objects)
    assert resumed._pair_layers == (
        [resumed.teacher.blocks[1], resumed.teacher.blocks[0].dense],
        [resumed.student.blocks[1], resumed.student.blocks[0].dense],
    )
    # The rebuilt teacher was frozen all the way down, so the optimizer
    # state fits and was restored.
    assert not resumed.teacher.trainable_weights
    assert not any(v.trainable for v in resumed.teacher.weights)
    assert int(resumed.optimizer.iterations.numpy()) == 4
    for saved, loaded in zip(_state(distiller), _state(resumed), strict=True):
        np.testing.assert_array_equal(saved, loaded)
    teacher_before = [w.numpy() for w in resumed.teacher.weights]
    resumed.fit(x, epochs=1, batch_size=64, verbose=0)
    for old, new in zip(teacher_before, resumed.teacher.weights):
        np.testing.assert_array_equal(old, new.numpy())
    assert int(resumed.optimizer.iterations.numpy()) == 8


def test_an_unknown_path_lists_the_layers_and_attributes_are_accepted(data):
    teacher, student = UserNet(32), UserNet(8)
    teacher(data[0][:1]), student(data[0][:1])
    distiller = Distiller(student, teacher)
    with pytest.raises(
        ValueError, match=r"the student .* no layer at path 'blocks.2'.*Its layers"
    ) as info:
        distiller.compile(feature_losses=[("blocks.1", "blocks.2")])
    assert student.blocks[0].name in str(info.value) and "attributes" in str(info.value)
