"""Fake quantizers: how a tensor's range is tracked and how it is rounded.

Same names and constructor arguments as TensorFlow Model Optimization
(`num_bits`, `per_axis`, `symmetric`, `narrow_range`). A quantizer owns no
variables: `build` creates them on the layer that uses it and returns them,
and `__call__` receives them back, so one quantizer object can serve many
layers and is serialized by its config alone.
"""

import keras
from keras import ops

from tfcompress.core.checks import check_fraction, check_int
from tfcompress.quantization.ranges import fit_range, moving_average, reduce_range


def _check_bits(num_bits):
    return check_int(
        num_bits,
        "num_bits",
        2,
        16,
        expected="an integer in [2, 16] (the range of "
        "`keras.quantizers.fake_quant_with_min_max_vars`)",
    )


class Quantizer:
    """Base class: fake-quantizes a tensor with a range kept in variables.

    Args:
        num_bits: bits of the integer grid, 2 to 16.
        per_axis: one range per slice along `axis` (per-channel).
        symmetric: range `[-m, m]` (zero point 0), as TFLite wants weights.
        narrow_range: grid `[-(2^(b-1)-1), 2^(b-1)-1]` instead of starting at
            `-2^(b-1)`; TFLite int8 weights are narrow.
        axis: the channel axis for `per_axis`; TFMOT always uses the last.
    """

    def __init__(self, num_bits=8, per_axis=False, symmetric=False, narrow_range=False, axis=-1):
        self.num_bits = _check_bits(num_bits)
        self.per_axis = bool(per_axis)
        self.symmetric = bool(symmetric)
        self.narrow_range = bool(narrow_range)
        self.axis = int(axis)

    def build(self, tensor_shape, name, layer):
        """Creates the range variables on `layer`; returns them in a dict."""
        shape = (tensor_shape[self.axis],) if self.per_axis else ()

        def weight(suffix, value):
            return layer.add_weight(
                name=f"{name}_{suffix}",
                shape=shape,
                initializer=keras.initializers.Constant(value),
                trainable=False,
                aggregation="mean",
            )

        return {"min_var": weight("min", -6.0), "max_var": weight("max", 6.0)}

    def update_range(self, inputs, weights):
        """Assigns the range variables from `inputs` (training only)."""
        raise NotImplementedError

    def __call__(self, inputs, training, weights, **kwargs):
        """Fake-quantizes `inputs`; in training, first updates the range."""
        if training:
            self.update_range(ops.stop_gradient(inputs), weights)
        range_min, range_max = weights["min_var"], weights["max_var"]
        return keras.quantizers.fake_quant_with_min_max_vars(
            inputs,
            ops.convert_to_tensor(range_min),
            ops.convert_to_tensor(range_max),
            num_bits=self.num_bits,
            narrow_range=self.narrow_range,
            axis=self.axis if self.per_axis else None,
        )

    def _batch_range(self, inputs):
        return fit_range(*reduce_range(inputs, self.per_axis, self.axis), self.symmetric)

    def get_config(self):
        return {
            "num_bits": self.num_bits,
            "per_axis": self.per_axis,
            "symmetric": self.symmetric,
            "narrow_range": self.narrow_range,
            "axis": self.axis,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()


@keras.saving.register_keras_serializable(package="tfcompress")
class LastValueQuantizer(Quantizer):
    """Range = min/max of the current tensor (used for weights).

    Example:
        >>> q = tfcompress.quantization.LastValueQuantizer(
        ...     num_bits=8, per_axis=True, symmetric=True, narrow_range=True)
    """

    def update_range(self, inputs, weights):
        range_min, range_max = self._batch_range(inputs)
        weights["min_var"].assign(range_min)
        weights["max_var"].assign(range_max)


@keras.saving.register_keras_serializable(package="tfcompress")
class MovingAverageQuantizer(Quantizer):
    """Range = exponential moving average of batch min/max (activations).

    Unlike TFMOT, whose averages start at [-6, 6] and take thousands of steps
    to forget it, the first training batch sets the range directly.

    Args:
        ema_decay: weight of the old range in each update.
        (others as `Quantizer`).
    """

    def __init__(
        self,
        num_bits=8,
        per_axis=False,
        symmetric=False,
        narrow_range=False,
        axis=-1,
        ema_decay=0.999,
    ):
        super().__init__(num_bits, per_axis, symmetric, narrow_range, axis)
        self.ema_decay = check_fraction(ema_decay, "ema_decay", expected="in [0, 1)")

    def build(self, tensor_shape, name, layer):
        weights = super().build(tensor_shape, name, layer)
        weights["initialized"] = layer.add_weight(
            name=f"{name}_initialized",
            shape=(),
            initializer="zeros",
            trainable=False,
            aggregation="mean",
        )
        return weights

    def _combine(self, old_min, old_max, new_min, new_max, initialized):
        return (
            moving_average(old_min, new_min, self.ema_decay, initialized),
            moving_average(old_max, new_max, self.ema_decay, initialized),
        )

    def update_range(self, inputs, weights):
        new_min, new_max = self._batch_range(inputs)
        range_min, range_max = self._combine(
            weights["min_var"], weights["max_var"], new_min, new_max, weights["initialized"]
        )
        range_min, range_max = fit_range(range_min, range_max, self.symmetric)
        weights["min_var"].assign(range_min)
        weights["max_var"].assign(range_max)
        weights["initialized"].assign(1.0)

    def get_config(self):
        return {**super().get_config(), "ema_decay": self.ema_decay}


@keras.saving.register_keras_serializable(package="tfcompress")
class AllValuesQuantizer(MovingAverageQuantizer):
    """Range = min and max over every batch seen in training (calibration)."""

    def __init__(self, num_bits=8, per_axis=False, symmetric=False, narrow_range=False, axis=-1):
        super().__init__(num_bits, per_axis, symmetric, narrow_range, axis, ema_decay=0.0)

    def _combine(self, old_min, old_max, new_min, new_max, initialized):
        seen = initialized > 0.5
        return (
            ops.where(seen, ops.minimum(old_min, new_min), new_min),
            ops.where(seen, ops.maximum(old_max, new_max), new_max),
        )

    def get_config(self):
        config = super().get_config()
        config.pop("ema_decay")
        return config
