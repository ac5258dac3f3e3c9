"""Pruning schedules: when to update the masks and to which sparsity."""

import keras
from keras import ops

from tfcompress.core.checks import check_fraction, check_int, check_number


def _check_sparsity(name, value):
    return check_fraction(
        value, name, hint="Pass the fraction of weights to zero, e.g. 0.8 for 80% sparsity."
    )


def _check_end_step(end_step, begin_step, allow_no_end):
    check_int(end_step, "end_step")
    if allow_no_end and end_step == -1:
        return -1
    if end_step < begin_step:
        no_end = " or -1 to prune until training ends" if allow_no_end else ""
        raise ValueError(
            f"`end_step` must be >= `begin_step`{no_end}. Received: "
            f"end_step={end_step}, begin_step={begin_step}."
        )
    return int(end_step)


class PruningSchedule:
    """Base class of pruning schedules: when to prune, and to which sparsity.

    A schedule is called with the training step and returns
    `(should_prune, sparsity)`: a boolean scalar tensor telling whether the
    masks are recomputed at this step, and a float32 scalar tensor with the
    target fraction of zeros. The step may be a Python int, a NumPy integer,
    a tensor or a `keras.Variable`; the computation is written in `keras.ops`
    so it also runs inside a `tf.function`.

    Masks are updated every `frequency` steps from `begin_step`, and always at
    `end_step`, so the final sparsity is reached even when `frequency` does not
    divide `end_step - begin_step` (TFMOT skips that last update).

    Subclasses implement `sparsity_at(step)` and `get_config()` and set the
    `begin_step`, `end_step` and `frequency` attributes (by default: every
    step, no end) that `should_prune(step)` reads; the base class provides
    `__call__` and `from_config`. Register a subclass with
    `keras.saving.register_keras_serializable` to save it.

    Example:

    ```python
    schedule = tfcompress.sparsity.ConstantSparsity(0.5, begin_step=0)
    should_prune, sparsity = schedule(100)
    ```
    """

    begin_step = 0
    end_step = -1
    frequency = 1

    def should_prune(self, step):
        """Whether the masks are recomputed at `step`.

        True when `begin_step <= step <= end_step` and either
        `(step - begin_step) % frequency == 0` or `step == end_step`
        (`end_step == -1` means no end).

        Args:
            step: the training step (int, NumPy integer, tensor or variable).

        Returns:
            A boolean scalar tensor.
        """
        step = ops.cast(step, "int64")
        started = ops.greater_equal(step, self.begin_step)
        on_turn = ops.equal(ops.mod(step - self.begin_step, self.frequency), 0)
        if self.end_step == -1:
            return ops.logical_and(started, on_turn)
        in_range = ops.logical_and(started, ops.less_equal(step, self.end_step))
        on_turn = ops.logical_or(on_turn, ops.equal(step, self.end_step))
        return ops.logical_and(in_range, on_turn)

    def prunes_at(self, step):
        """`should_prune(step)` for a Python int step, as a Python bool.

        Asked before every training batch by `UpdatePruningStep`: the same
        rule as `should_prune`, without a tensor round trip (too costly
        before every batch; docs/DESIGN.md). Schedules that
        override `should_prune` are asked through it.
        """
        if type(self).should_prune is not PruningSchedule.should_prune:
            return bool(ops.convert_to_numpy(self.should_prune(step)))
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        return (step - self.begin_step) % self.frequency == 0 or step == self.end_step

    def sparsity_at(self, step):
        """The target sparsity at `step`, as a float32 scalar tensor."""
        raise NotImplementedError(
            f"Pruning schedule '{type(self).__name__}' must override `sparsity_at(self, step)`."
        )

    def __call__(self, step):
        """Returns `(should_prune, sparsity)` for `step`.

        Args:
            step: the training step (int, NumPy integer, tensor or variable).

        Returns:
            A tuple of a boolean scalar tensor and a float32 scalar tensor.
        """
        return self.should_prune(step), self.sparsity_at(step)

    def get_config(self):
        raise NotImplementedError(
            f"Pruning schedule '{type(self).__name__}' must override "
            "`get_config()` in order to be serializable."
        )

    @classmethod
    def from_config(cls, config):
        """Instantiates a schedule from the output of `get_config()`.

        Args:
            config: a flat dict of constructor arguments.

        Returns:
            A schedule instance.
        """
        return cls(**config)

    def __repr__(self):
        try:
            config = self.get_config()
        except NotImplementedError:
            return object.__repr__(self)
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


@keras.saving.register_keras_serializable(package="tfcompress")
class ConstantSparsity(PruningSchedule):
    """Prunes to one constant sparsity every `frequency` steps.

    Args:
        target_sparsity: fraction of weights to zero, in [0, 1).
        begin_step: first step at which the masks are updated, >= 0.
        end_step: last step at which the masks are updated, >= `begin_step`;
            -1 (the default) keeps updating until training ends.
        frequency: update the masks every `frequency` steps, >= 1. With an
            `end_step`, the masks are also updated at `end_step` itself.

    Raises:
        TypeError: when a step argument is not an integer or the sparsity is
            not a number.
        ValueError: when an argument is out of range.

    Example:

    ```python
    schedule = tfcompress.sparsity.ConstantSparsity(
        target_sparsity=0.8, begin_step=0, end_step=1000, frequency=100)
    should_prune, sparsity = schedule(200)  # True, 0.8
    ```
    """

    def __init__(self, target_sparsity, begin_step, end_step=-1, frequency=100):
        self.target_sparsity = _check_sparsity("target_sparsity", target_sparsity)
        self.begin_step = check_int(begin_step, "begin_step", 0, hint="Steps count from 0.")
        self.end_step = _check_end_step(end_step, self.begin_step, True)
        self.frequency = check_int(
            frequency, "frequency", 1, hint="Pass 1 to update the masks at every step."
        )

    def sparsity_at(self, step):
        return ops.convert_to_tensor(self.target_sparsity, dtype="float32")

    def get_config(self):
        return {
            "target_sparsity": self.target_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "frequency": self.frequency,
        }


@keras.saving.register_keras_serializable(package="tfcompress")
class PolynomialDecay(PruningSchedule):
    """Raises the sparsity from `initial_sparsity` to `final_sparsity`.

    The sparsity at `step` is
    `final + (initial - final) * (1 - p) ** power` with
    `p = clip((step - begin_step) / (end_step - begin_step), 0, 1)`
    (Zhu & Gupta, https://arxiv.org/abs/1710.01878), so it grows fast at first
    and levels off. The masks are updated every `frequency` steps from
    `begin_step` and at `end_step`, where the sparsity is `final_sparsity`.

    Args:
        initial_sparsity: sparsity at `begin_step`, in [0, 1).
        final_sparsity: sparsity from `end_step` on, in [0, 1).
        begin_step: first step at which the masks are updated, >= 0.
        end_step: last step at which the masks are updated, >= `begin_step`.
            With `end_step == begin_step` the schedule prunes once, to
            `final_sparsity`.
        power: exponent of the decay, > 0. 1 is a linear ramp.
        frequency: update the masks every `frequency` steps, >= 1.

    Raises:
        TypeError: when an argument has the wrong type.
        ValueError: when an argument is out of range.

    Example:

    ```python
    schedule = tfcompress.sparsity.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=0.8, begin_step=0, end_step=1000)
    should_prune, sparsity = schedule(1000)  # True, 0.8
    ```
    """

    def __init__(
        self,
        initial_sparsity,
        final_sparsity,
        begin_step,
        end_step,
        power=3,
        frequency=100,
    ):
        self.initial_sparsity = _check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = _check_sparsity("final_sparsity", final_sparsity)
        self.begin_step = check_int(begin_step, "begin_step", 0, hint="Steps count from 0.")
        self.end_step = _check_end_step(end_step, self.begin_step, False)
        check_number(
            power,
            "power",
            0,
            open_low=True,
            hint="Use 1 for a linear ramp, 3 (the default) for a fast start.",
        )
        self.power = power if isinstance(power, int) else float(power)
        self.frequency = check_int(
            frequency, "frequency", 1, hint="Pass 1 to update the masks at every step."
        )

    def sparsity_at(self, step):
        elapsed = ops.cast(ops.cast(step, "int64") - self.begin_step, "float32")
        if self.end_step == self.begin_step:
            progress = ops.cast(ops.greater_equal(elapsed, 0.0), "float32")
        else:
            progress = ops.clip(elapsed / float(self.end_step - self.begin_step), 0.0, 1.0)
        remaining = ops.power(1.0 - progress, float(self.power))
        return ops.cast(
            self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * remaining,
            "float32",
        )

    def get_config(self):
        return {
            "initial_sparsity": self.initial_sparsity,
            "final_sparsity": self.final_sparsity,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "power": self.power,
            "frequency": self.frequency,
        }


_BUILTIN = {
    "ConstantSparsity": ConstantSparsity,
    "PolynomialDecay": PolynomialDecay,
}


def serialize(schedule):
    """Serializes a pruning schedule to a JSON-compatible dict.

    Args:
        schedule: a `PruningSchedule`.

    Returns:
        The dict of `keras.saving.serialize_keras_object(schedule)`.

    Example:

    ```python
    config = tfcompress.sparsity.pruning_schedule.serialize(
        tfcompress.sparsity.ConstantSparsity(0.5, 0))
    ```
    """
    if not isinstance(schedule, PruningSchedule):
        raise TypeError(
            "`schedule` must be a `PruningSchedule` (e.g. ConstantSparsity or "
            f"PolynomialDecay). Received: schedule={schedule!r}."
        )
    return keras.saving.serialize_keras_object(schedule)


def deserialize(config, custom_objects=None):
    """Rebuilds a pruning schedule from `serialize()` output.

    Also accepts a schedule (returned as is) and the `{"class_name": ...,
    "config": {...}}` dicts that TFMOT's `get_config()` produces, to ease
    migration.

    Args:
        config: a `PruningSchedule`, or a dict from `serialize()`,
            `keras.saving.serialize_keras_object` or TFMOT's `get_config()`.
        custom_objects: optional dict mapping names to custom schedule classes.

    Returns:
        A `PruningSchedule`.

    Raises:
        TypeError: when `config` is neither a schedule nor a dict, or does not
            describe a `PruningSchedule`.

    Example:

    ```python
    schedule = tfcompress.sparsity.pruning_schedule.deserialize(
        {"class_name": "PolynomialDecay",
         "config": {"initial_sparsity": 0.0, "final_sparsity": 0.8,
                    "begin_step": 0, "end_step": 1000}})
    ```
    """
    if isinstance(config, PruningSchedule):
        return config
    if not isinstance(config, dict):
        raise TypeError(
            "`config` must be a `PruningSchedule` or a dict from "
            f"`serialize()`. Received: config={config!r} of type "
            f"{type(config).__name__}."
        )
    objects = dict(_BUILTIN)
    objects.update(custom_objects or {})
    schedule = keras.saving.deserialize_keras_object(config, custom_objects=objects)
    if not isinstance(schedule, PruningSchedule):
        raise TypeError(
            f"`config` describes a {type(schedule).__name__}, not a "
            f"`PruningSchedule`. Received: config={config!r}."
        )
    return schedule
