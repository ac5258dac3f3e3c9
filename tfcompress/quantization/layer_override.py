"""How one layer is quantized, where it differs from the scheme's default."""

import collections.abc

import keras
import numpy as np

from tfcompress.core.checks import is_int
from tfcompress.quantization.default_quantize_config import check_bits

_FLAGS = ("skip", "quantize_output", "quantize_input")
_CHANNELS = ("outlier_channels", "input_outlier_channels")
_FACTORS = ("input_scale", "output_scale")
FIELDS = ("weight_bits", "activation_bits") + _FLAGS + _CHANNELS + _FACTORS


def check_channels(channels, name, where=""):
    """None, or a list of non-negative channel indices, returned sorted and unique."""
    if channels is None:
        return None
    if not isinstance(channels, (list, tuple)) or not all(is_int(c) and c >= 0 for c in channels):
        raise ValueError(
            f"`{name}`{where} must be a list of non-negative channel indices, e.g. "
            f"[99, 223]. Received: {name}={channels!r}"
        )
    return sorted({int(c) for c in channels})


def check_factors(factors, name, where="", side="input"):
    """None, or a 1-D float32 vector of positive finite factors."""
    if factors is None:
        return None
    values = np.asarray(factors, dtype="float32")
    if (
        values.ndim != 1
        or not values.size
        or not np.all(np.isfinite(values))
        or not np.all(values > 0)
    ):
        raise ValueError(
            f"`{name}`{where} must be a 1-D vector of positive finite factors, one per "
            f"flat {side} channel (see `find_outlier_channels`). Received: {name} with shape {values.shape}"
        )
    return values


def _checked(values, where):
    """The fields validated and normalized; errors name the field and `where`."""
    bits = values["weight_bits"], values["activation_bits"]
    if bits != (None, None):
        check_bits(8 if bits[0] is None else bits[0], 8 if bits[1] is None else bits[1], where)
    checked = dict(values)
    for name in _FLAGS:
        value = values[name]
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise ValueError(
                f"`{name}`{where} must be True, False or None. Received: {name}={value!r}"
            )
        checked[name] = None if value is None else bool(value)
    for name in _CHANNELS:
        checked[name] = check_channels(values[name], name, where)
    for name in _FACTORS:
        checked[name] = check_factors(values[name], name, where, side=name.split("_")[0])
    return checked


@keras.saving.register_keras_serializable(package="tfcompress")
class LayerOverride(collections.abc.Mapping):
    """What one layer does differently from its `QuantizeScheme`.

    Every field left at None takes the scheme's choice. As a read-only
    mapping of the fields that are set, it compares equal to (and reads like)
    the dict form that `quantize_model(per_layer=...)` also accepts:
    `LayerOverride(skip=True) == {"skip": True}`.

    Args:
        weight_bits: 2..8 bits for this layer's weights.
        activation_bits: 8 or 16 for this layer's activations.
        skip: leave the layer float.
        quantize_output: False leaves the output float (a consumer quantizes
            it), True quantizes it where the scheme would not.
        quantize_input: quantize the layer's input in the wrapper, behind an
            isolating multiply, so the producer stays float in TFLite.
        outlier_channels: flat output channels computed by a second int8
            matmul (see `QuantizeWrapper`).
        input_outlier_channels: flat input channels quantized with their own
            range in a matmul of their own (see `QuantizeWrapper`).
        input_scale: SmoothQuant factors, one per flat input channel.
        output_scale: factors >= 1, one per flat output channel.

    Raises:
        ValueError: for a field of the wrong type or value; the message
            names the field.

    Example:
        >>> override = tfcompress.quantization.LayerOverride(weight_bits=4)
        >>> qat = tfcompress.quantization.quantize_model(model, per_layer={"dense": override})
    """

    def __init__(
        self,
        weight_bits=None,
        activation_bits=None,
        skip=None,
        quantize_output=None,
        quantize_input=None,
        outlier_channels=None,
        input_outlier_channels=None,
        input_scale=None,
        output_scale=None,
    ):
        self._values = _checked(
            dict(
                weight_bits=weight_bits,
                activation_bits=activation_bits,
                skip=skip,
                quantize_output=quantize_output,
                quantize_input=quantize_input,
                outlier_channels=outlier_channels,
                input_outlier_channels=input_outlier_channels,
                input_scale=input_scale,
                output_scale=output_scale,
            ),
            where="",
        )

    @classmethod
    def from_dict(cls, override, key=None):
        """A `LayerOverride` from the dict form (or itself), checking the keys.

        Args:
            override: a `LayerOverride` or a dict with keys among `FIELDS`.
            key: the layer name or path it is for (named in errors).

        Returns:
            A `LayerOverride`.

        Raises:
            ValueError: for an unknown key or a bad value.
        """
        if isinstance(override, LayerOverride):
            return override
        where = "" if key is None else f" in per_layer[{key!r}]"
        if not isinstance(override, dict) or set(override) - set(FIELDS):
            name = "override" if key is None else f"per_layer[{key!r}]"
            raise ValueError(
                f"`{name}` must be a dict with keys among {sorted(FIELDS)}, or a "
                f"`tfcompress.quantization.LayerOverride`. Received: {override!r}"
            )
        instance = cls.__new__(cls)
        instance._values = _checked({name: override.get(name) for name in FIELDS}, where)
        return instance

    def __getitem__(self, name):
        value = self._values[name] if name in FIELDS else None
        if value is None:
            raise KeyError(name)
        return value

    def __getattr__(self, name):
        if name in FIELDS:
            return self._values[name]
        raise AttributeError(
            f"`LayerOverride` has no field {name!r}; its fields are {list(FIELDS)}."
        )

    def __iter__(self):
        return (name for name in FIELDS if self._values[name] is not None)

    def __len__(self):
        return sum(1 for _ in self)

    def __eq__(self, other):
        if not isinstance(other, collections.abc.Mapping) or set(self) != set(other):
            return False
        return all(np.array_equal(self[name], other[name]) for name in self)

    __hash__ = None

    def __repr__(self):
        fields = ", ".join(f"{name}={value!r}" for name, value in self.items())
        return f"LayerOverride({fields})"

    def get_config(self):
        config = dict(self._values)
        for name in _FACTORS:
            if config[name] is not None:
                config[name] = config[name].tolist()
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
