import inspect
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.sparsity.pruning_schedule import (
    ConstantSparsity,
    PolynomialDecay,
    PruningSchedule,
    deserialize,
    serialize,
)

# One entry per schedule class: every parameterized test covers a new one.
SCHEDULES = [
    ConstantSparsity(0.5, begin_step=10, end_step=50, frequency=20),
    ConstantSparsity(0.3, begin_step=0),
    PolynomialDecay(0.1, 0.8, begin_step=0, end_step=95, frequency=10),
    PolynomialDecay(0.0, 0.6, begin_step=5, end_step=40, power=1.5, frequency=7),
]
STEPS = [0, 1, 4, 5, 9, 10, 12, 19, 30, 40, 50, 51, 90, 95, 96, 1000]


def _values(schedule, steps=STEPS):
    out = []
    for step in steps:
        should_prune, sparsity = schedule(step)
        out.append((bool(should_prune), float(sparsity)))
    return out


def _assert_values(schedule, steps, expected):
    got = _values(schedule, steps)
    assert [p for p, _ in got] == [p for p, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-6)


def _pruning_steps(schedule, last):
    # keras.ops are elementwise, so one call checks a whole range of steps.
    steps = np.arange(last + 1)
    return steps[np.asarray(schedule.should_prune(steps))].tolist()


def test_constant_sparsity_table():
    schedule = ConstantSparsity(0.5, begin_step=10, end_step=50, frequency=20)
    expected = {
        0: False,
        9: False,
        10: True,
        11: False,
        30: True,
        49: False,
        50: True,
        51: False,
        70: False,
    }
    for step, should_prune in expected.items():
        got_prune, got_sparsity = schedule(step)
        assert bool(got_prune) is should_prune, step
        assert float(got_sparsity) == pytest.approx(0.5)


def test_constant_sparsity_without_end_prunes_forever():
    schedule = ConstantSparsity(0.5, begin_step=10, frequency=20)
    assert _pruning_steps(schedule, 100) == [10, 30, 50, 70, 90]
    assert bool(schedule(10**9 + 10)[0])
    assert not bool(schedule(10**9 + 11)[0])


def test_last_update_lands_on_end_step_when_frequency_does_not_divide():
    constant = ConstantSparsity(0.3, begin_step=0, end_step=95, frequency=10)
    expected = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    assert _pruning_steps(constant, 200) == expected

    decay = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=95, frequency=10)
    assert _pruning_steps(decay, 200) == expected
    should_prune, sparsity = decay(95)
    assert bool(should_prune)
    assert float(sparsity) == pytest.approx(0.8, abs=1e-7)
    assert float(decay(90)[1]) < 0.8


def test_begin_step_offsets_the_frequency_grid():
    schedule = ConstantSparsity(0.5, begin_step=3, end_step=20, frequency=5)
    assert _pruning_steps(schedule, 40) == [3, 8, 13, 18, 20]


def test_polynomial_decay_table():
    schedule = PolynomialDecay(0.1, 0.8, begin_step=0, end_step=100, power=3)
    expected = {
        0: 0.1,
        25: 0.8 - 0.7 * 0.75**3,
        50: 0.8 - 0.7 * 0.5**3,
        99: 0.8 - 0.7 * 0.01**3,
        100: 0.8,
        150: 0.8,
    }
    for step, sparsity in expected.items():
        assert float(schedule(step)[1]) == pytest.approx(sparsity, abs=1e-6)
    assert _pruning_steps(schedule, 300) == [0, 100]


def test_polynomial_decay_before_begin_and_linear_power():
    schedule = PolynomialDecay(0.2, 0.6, begin_step=20, end_step=60, power=1, frequency=10)
    _assert_values(
        schedule,
        [0, 19, 20, 30, 40, 60, 61],
        [
            (False, 0.2),
            (False, 0.2),
            (True, 0.2),
            (True, 0.3),
            (True, 0.4),
            (True, 0.6),
            (False, 0.6),
        ],
    )


def test_polynomial_decay_with_begin_equal_end_prunes_once_to_final():
    schedule = PolynomialDecay(0.0, 0.6, begin_step=10, end_step=10)
    _assert_values(schedule, [9, 10, 11], [(False, 0.0), (True, 0.6), (False, 0.6)])


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_step_types_agree(schedule):
    expected = _values(schedule)
    for convert in (
        np.int64,
        np.int32,
        lambda s: tf.constant(s, tf.int64),
        lambda s: keras.Variable(s, dtype="int32"),
    ):
        assert _values(schedule, [convert(s) for s in STEPS]) == expected


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_inside_tf_function_with_variable_step(schedule):
    step = tf.Variable(0, dtype=tf.int64)

    @tf.function
    def at_current_step():
        return schedule(step)

    expected = _values(schedule)
    for value, (expected_prune, expected_sparsity) in zip(STEPS, expected):
        step.assign(value)
        should_prune, sparsity = at_current_step()
        assert should_prune.dtype == tf.bool
        assert sparsity.dtype == tf.float32
        assert bool(should_prune) is expected_prune
        assert float(sparsity) == pytest.approx(expected_sparsity, abs=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    init_args = set(inspect.signature(type(schedule).__init__).parameters)
    assert set(config) == init_args - {"self"}
    json.dumps(config)
    rebuilt = type(schedule).from_config(config)
    assert rebuilt.get_config() == config
    assert _values(rebuilt) == _values(schedule)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_keras_serialization_round_trip(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    assert config["registered_name"] == f"tfcompress>{type(schedule).__name__}"
    rebuilt = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert type(rebuilt) is type(schedule)
    assert _values(rebuilt) == _values(schedule)
    assert serialize(schedule) == config
    assert _values(deserialize(config)) == _values(schedule)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_deserialize_accepts_tfmot_style_config(schedule):
    tfmot_style = {
        "class_name": type(schedule).__name__,
        "config": schedule.get_config(),
    }
    assert _values(deserialize(tfmot_style)) == _values(schedule)
    assert deserialize(schedule) is schedule


@keras.saving.register_keras_serializable(package="tfcompress_test")
class _ScaleBySparsity(keras.layers.Layer):
    """Test layer that keeps a schedule in its config, as wrappers do."""

    def __init__(self, schedule, **kwargs):
        super().__init__(**kwargs)
        self.schedule = deserialize(schedule)

    def call(self, inputs):
        return inputs * self.schedule(50)[1]

    def get_config(self):
        return {**super().get_config(), "schedule": serialize(self.schedule)}


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_keras_file_round_trip_of_model_holding_schedule(schedule, tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, _ScaleBySparsity(schedule)(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(loaded(x), model(x))
    restored = loaded.layers[-1].schedule
    assert restored.get_config() == schedule.get_config()
    assert _values(restored) == _values(schedule)


def test_custom_subclass_gets_should_prune_from_base():
    class Linear(PruningSchedule):
        begin_step, end_step, frequency = 0, 10, 5

        def sparsity_at(self, step):
            return keras.ops.cast(step, "float32") / 20.0

        def get_config(self):
            return {}

    _assert_values(
        Linear(),
        [0, 3, 5, 10, 11],
        [(True, 0.0), (False, 0.15), (True, 0.25), (True, 0.5), (False, 0.55)],
    )
    with pytest.raises(NotImplementedError, match="sparsity_at"):
        PruningSchedule()(0)
    with pytest.raises(NotImplementedError, match="get_config"):
        PruningSchedule().get_config()


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: ConstantSparsity(1.5, 0),
            ValueError,
            r"`target_sparsity` must be in \[0, 1\)\. Received: target_sparsity=1\.5",
        ),
        (lambda: ConstantSparsity(1.0, 0), ValueError, r"target_sparsity=1\.0"),
        (lambda: ConstantSparsity(-0.1, 0), ValueError, r"target_sparsity=-0\.1"),
        (lambda: ConstantSparsity("0.5", 0), TypeError, r"`target_sparsity` must be a float"),
        (lambda: ConstantSparsity(True, 0), TypeError, r"target_sparsity"),
        (
            lambda: ConstantSparsity(0.5, -1),
            ValueError,
            r"`begin_step` must be >= 0\. Received: begin_step=-1",
        ),
        (
            lambda: ConstantSparsity(0.5, 1.5),
            TypeError,
            r"`begin_step` must be an integer\. Received: begin_step=1\.5",
        ),
        (
            lambda: ConstantSparsity(0.5, 10, 5),
            ValueError,
            r"`end_step` must be >= `begin_step` or -1.*end_step=5, begin_step=10",
        ),
        (lambda: ConstantSparsity(0.5, 0, -2), ValueError, r"end_step=-2"),
        (lambda: ConstantSparsity(0.5, 0, 10.0), TypeError, r"`end_step` must be an integer"),
        (
            lambda: ConstantSparsity(0.5, 0, frequency=0),
            ValueError,
            r"`frequency` must be >= 1\. Received: frequency=0",
        ),
        (
            lambda: ConstantSparsity(0.5, 0, frequency=2.5),
            TypeError,
            r"`frequency` must be an integer",
        ),
        (
            lambda: PolynomialDecay(1.2, 0.5, 0, 10),
            ValueError,
            r"`initial_sparsity` must be in \[0, 1\)\. Received: initial_sparsity=1\.2",
        ),
        (
            lambda: PolynomialDecay(0.0, 1.0, 0, 10),
            ValueError,
            r"`final_sparsity` must be in \[0, 1\)\. Received: final_sparsity=1\.0",
        ),
        (
            lambda: PolynomialDecay(0.0, 0.5, 0, -1),
            ValueError,
            r"`end_step` must be >= `begin_step`\. Received: end_step=-1",
        ),
        (lambda: PolynomialDecay(0.0, 0.5, 5, 4), ValueError, r"end_step=4, begin_step=5"),
        (lambda: PolynomialDecay(0.0, 0.5, -3, 4), ValueError, r"begin_step=-3"),
        (
            lambda: PolynomialDecay(0.0, 0.5, 0, 10, power=0),
            ValueError,
            r"`power` must be > 0\. Received: power=0",
        ),
        (
            lambda: PolynomialDecay(0.0, 0.5, 0, 10, power="3"),
            TypeError,
            r"`power` must be a positive number",
        ),
        (lambda: PolynomialDecay(0.0, 0.5, 0, 10, frequency=-1), ValueError, r"frequency=-1"),
        (lambda: serialize("not a schedule"), TypeError, r"`schedule` must be a `PruningSchedule`"),
        (lambda: deserialize(42), TypeError, r"`config` must be a `PruningSchedule` or a dict"),
        (
            lambda: deserialize(keras.saving.serialize_keras_object(keras.layers.Dense(2))),
            TypeError,
            r"describes a Dense, not a `PruningSchedule`",
        ),
    ],
)
def test_validation_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "schedule",
    [
        ConstantSparsity(0.5, begin_step=3, frequency=4),
        ConstantSparsity(0.5, begin_step=0, end_step=10, frequency=4),
        PolynomialDecay(0.0, 0.8, begin_step=2, end_step=17, frequency=5),
    ],
)
def test_prunes_at_agrees_with_should_prune(schedule):
    for step in range(25):
        assert schedule.prunes_at(step) == bool(
            keras.ops.convert_to_numpy(schedule.should_prune(step))
        ), step
