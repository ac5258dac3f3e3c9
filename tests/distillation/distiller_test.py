"""Distiller on classifiers: the loss value, the frozen teacher, metrics, errors."""

import keras
import numpy as np
import pytest

from distillation.reference import numpy_ce, numpy_kd
from tfcompress.cli.digits import load_digits
from tfcompress.distillation import Distiller, kd_loss


def _digits():
    x, y, _, _ = load_digits(test_fraction=0)
    return x.reshape(len(x), -1), y


def _mlp(width, name, dropout=0.0, batch_norm=False, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((64,))
    hidden = keras.layers.Dense(width, activation="relu", name="hidden")(inputs)
    if batch_norm:
        hidden = keras.layers.BatchNormalization(name="bn")(hidden)
    if dropout:
        hidden = keras.layers.Dropout(dropout, name="dropout")(hidden)
    return keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden), name=name)


@pytest.fixture(scope="module")
def digits():
    return _digits()


@pytest.fixture(scope="module")
def teacher(digits):
    x, y = digits
    model = _mlp(64, "teacher", dropout=0.3, batch_norm=True)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    return model


def test_loss_on_a_fixed_batch_matches_numpy(digits, teacher):
    x, y = digits[0][:128], digits[1][:128]
    student = _mlp(16, "student", seed=1)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer="adam",
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=0.3,
        temperature=4.0,
    )
    result = distiller.evaluate(x, y, batch_size=128, verbose=0, return_dict=True)
    t_logits = keras.ops.convert_to_numpy(teacher(x, training=False))
    s_logits = keras.ops.convert_to_numpy(student(x))
    hard, soft = numpy_ce(s_logits, y), numpy_kd(t_logits, s_logits, 4.0)
    assert result["student_loss"] == pytest.approx(hard, abs=1e-6)
    assert result["distillation_loss"] == pytest.approx(soft, abs=1e-6)
    assert result["loss"] == pytest.approx(0.3 * hard + 0.7 * soft, abs=1e-6)


def test_keras_io_example_compile_trains_and_predict_is_the_student(digits, teacher):
    x, y = digits
    student = _mlp(16, "student", seed=2)
    distiller = Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(0.01),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        distillation_loss_fn=keras.losses.KLDivergence(),
        alpha=0.1,
        temperature=10,
    )
    history = distiller.fit(x, y, epochs=5, batch_size=64, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert history["sparse_categorical_accuracy"][-1] > 0.8
    np.testing.assert_allclose(
        distiller.predict(x[:32], verbose=0), keras.ops.convert_to_numpy(student(x[:32])), atol=1e-6
    )
    # KLDivergence() means the T²-scaled KL from logits, not the raw-logit clip.
    logged = distiller.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    expected = kd_loss(teacher(x, training=False), student(x), 10.0)
    assert logged["distillation_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_without_labels_the_loss_is_the_distillation_term(digits, teacher):
    x = digits[0][:100]
    distiller = Distiller(_mlp(16, "student", seed=3), teacher)
    distiller.compile(alpha=0.5, temperature=2.0)
    result = distiller.evaluate(x, batch_size=100, verbose=0, return_dict=True)
    expected = numpy_kd(
        keras.ops.convert_to_numpy(teacher(x, training=False)),
        keras.ops.convert_to_numpy(distiller.student(x)),
        2.0,
    )
    assert result["loss"] == pytest.approx(expected, abs=1e-6)
    history = distiller.fit(x, epochs=3, batch_size=20, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_teacher_is_frozen_and_runs_in_inference_mode(digits, teacher):
    x, y = digits
    before = [w.numpy().copy() for w in teacher.weights]
    expected = keras.ops.convert_to_numpy(teacher(x, training=False))
    distiller = Distiller(_mlp(16, "student", seed=4), teacher)
    distiller.compile(student_loss_fn="sparse_categorical_crossentropy", alpha=0.0)
    assert not any(w is t for w in distiller.trainable_weights for t in teacher.weights)
    distiller.fit(x, y, epochs=2, batch_size=64, verbose=0)
    for old, new in zip(before, teacher.weights):
        np.testing.assert_array_equal(old, new.numpy())  # BatchNorm statistics too
    np.testing.assert_array_equal(expected, keras.ops.convert_to_numpy(teacher(x, training=False)))


class NoTrainingArgTeacher(keras.Model):
    """A subclassed teacher with heavy dropout and no `training` argument."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(32, activation="relu")
        self.dropout = keras.layers.Dropout(0.9)
        self.head = keras.layers.Dense(10)

    def call(self, inputs):
        return self.head(self.dropout(self.hidden(inputs)))


def test_a_teacher_without_training_argument_runs_without_dropout(digits):
    x = digits[0][:64]
    teacher = NoTrainingArgTeacher(name="dropout_teacher")
    teacher(x[:1])
    distiller = Distiller(_mlp(16, "student", seed=6), teacher)
    distiller.compile(optimizer=keras.optimizers.SGD(0.0), temperature=1.0)
    trained = distiller.fit(x, batch_size=64, epochs=1, verbose=0).history["loss"][0]
    expected = numpy_kd(
        keras.ops.convert_to_numpy(teacher(x, training=False)),
        keras.ops.convert_to_numpy(distiller.student(x)),
        1.0,
    )
    assert trained == pytest.approx(expected, abs=1e-6)


def test_sample_weight_weights_both_terms(digits, teacher):
    x, y = digits[0][:64], digits[1][:64]
    weights = np.r_[np.ones(32), np.zeros(32)].astype("float32")
    distiller = Distiller(_mlp(16, "student", seed=5), teacher)
    distiller.compile(student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    weighted = distiller.evaluate(
        x, y, sample_weight=weights, batch_size=64, verbose=0, return_dict=True
    )
    first_half = distiller.evaluate(x[:32], y[:32], batch_size=32, verbose=0, return_dict=True)
    for name in ("loss", "student_loss", "distillation_loss"):
        assert weighted[name] == pytest.approx(first_half[name], rel=1e-5)


def test_errors(teacher):
    student = _mlp(16, "student")
    with pytest.raises(ValueError, match="same model object"):
        Distiller(teacher, teacher)
    with pytest.raises(TypeError, match="`student` must be a `keras.Model`"):
        Distiller(keras.layers.Dense(3), teacher)
    reused = keras.Model(teacher.inputs, keras.layers.Dense(10)(teacher.get_layer("hidden").output))
    with pytest.raises(ValueError, match="`student` shares 2 weights with `teacher`"):
        Distiller(reused, teacher)
    distiller = Distiller(student, teacher)
    for alpha in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match=r"`alpha` .* must be a number in \[0, 1\]"):
            distiller.compile(alpha=alpha)
    with pytest.raises(ValueError, match="`temperature` must be a finite number > 0"):
        distiller.compile(temperature=0)
    with pytest.raises(ValueError, match="takes `student_loss_fn`.*not `loss`"):
        distiller.compile(loss="mse")
    with pytest.raises(ValueError, match="`distillation_loss_fn` must be"):
        distiller.compile(distillation_loss_fn="hinge_of_doom")
    with pytest.raises(ValueError, match="Nothing to train on"):
        distiller.compile(distill_outputs=False)
    narrow = keras.Model(student.inputs, keras.layers.Dense(7)(student.get_layer("hidden").output))
    with pytest.raises(ValueError, match="teacher has 10, student has 7"):
        Distiller(narrow, teacher).compile()
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="`teacher` .* is not built"):
        Distiller(student, unbuilt)


class _FakeTfKerasModel:
    pass


_FakeTfKerasModel.__module__ = "tf_keras.src.engine.training"


def test_tf_keras_model_is_rejected(teacher):
    with pytest.raises(
        TypeError, match="`teacher` must be a Keras 3 object; received a `tf_keras`"
    ):
        Distiller(_mlp(16, "student"), _FakeTfKerasModel())
