"""Which layers get quantized and with which bits: the default registry."""

import keras

from tfcompress.core.wrapper import build_shape_of
from tfcompress.quantization.default_quantize_config import DefaultQuantizeConfig, check_bits
from tfcompress.quantization.flat_matmul import flat_matmul_spec
from tfcompress.quantization.layer_override import LayerOverride

L = keras.layers

# Layers whose int8 output reuses their input's scale in TFLite: quantizing
# their output again would add a requantize op, so they are left unwrapped.
PASSTHROUGH = (
    L.MaxPooling1D,
    L.MaxPooling2D,
    L.MaxPooling3D,
    L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D,
    L.GlobalMaxPooling3D,
    L.Flatten,
    L.Reshape,
    L.Permute,
    L.Dropout,
    L.SpatialDropout1D,
    L.SpatialDropout2D,
    L.SpatialDropout3D,
    L.ZeroPadding1D,
    L.ZeroPadding2D,
    L.Cropping1D,
    L.Cropping2D,
    L.Identity,
    L.InputLayer,
)

# Computed in float on purpose (int8 loses the precision of their variance),
# but their output is quantized so the matmuls reading it run in int8:
# TFLite keeps them float between dequantize/quantize ops.
FLOAT_COMPUTE = (L.LayerNormalization, L.GroupNormalization, L.UnitNormalization)

# Output-only layers: TFLite computes them on int8 with their own output range.
OUTPUT_ONLY = (
    L.ReLU,
    L.Activation,
    L.LeakyReLU,
    L.Add,
    L.Subtract,
    L.Multiply,
    L.Concatenate,
    L.Average,
    L.Maximum,
    L.Minimum,
    L.AveragePooling1D,
    L.AveragePooling2D,
    L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D,
    L.GlobalAveragePooling3D,
    L.UpSampling2D,
    L.Softmax,
    L.BatchNormalization,
) + FLOAT_COMPUTE

FOLDABLE = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D, L.Dense)


def weight_spec(layer):
    """`(weight_attrs, per_axis, axis)` for layers with weights, else None."""
    if isinstance(layer, L.DepthwiseConv2D):
        # TFLite's depthwise channel is in*multiplier; per-axis along `in` is
        # only that channel when the multiplier is 1.
        return ["kernel"], layer.depth_multiplier == 1, 2
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)) and not isinstance(
        layer, L.Conv2DTranspose
    ):
        return ["kernel"], True, -1
    if isinstance(layer, (L.Dense, L.EinsumDense)):
        return ["kernel"], False, -1
    if isinstance(layer, L.Embedding):
        return ["embeddings"], False, -1
    return None


def is_supported(layer):
    return weight_spec(layer) is not None or isinstance(layer, OUTPUT_ONLY)


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeScheme:
    """Default 8-bit TFLite scheme with the bit widths as arguments.

    Weights: symmetric, narrow range, per-channel for Conv/DepthwiseConv and
    for Dense/EinsumDense on inputs of rank > 2 (run as a 1x1 CONV_2D, see
    `QuantizeWrapper`), per-tensor for Dense on 2-D inputs (TFLite's
    FULLY_CONNECTED) and Embedding. Activations: asymmetric
    per-tensor moving-average ranges (symmetric when 16-bit, as TFLite int16
    wants zero point 0). LayerNormalization computes in float with its output
    quantized (see `FLOAT_COMPUTE`); a Dense/EinsumDense on >2-D inputs
    with an activation TFLite does not fuse (GELU) also quantizes its matmul
    output before the activation, so the matmul and the activation run int8
    (see `QuantizeWrapper` and `flat_matmul`). Where a functional graph
    shows it, outputs read only by a LayerNormalization stay float and the
    Embedding tables summed before it get one int8 scale per dimension (see
    `graph_plan`).

    Args:
        weight_bits: 2..8 for every weight.
        activation_bits: 8, or 16 for TFLite's int16x8 mode.
        per_layer: `{layer name or path: LayerOverride}`, or the same with
            dicts of `LayerOverride` fields (`{"weight_bits": 8}`), which are
            converted (the channels: see `QuantizeWrapper`).

    Example:
        >>> scheme = tfcompress.quantization.QuantizeScheme(
        ...     weight_bits=4, per_layer={"dense_1": {"weight_bits": 8}})
    """

    def __init__(self, weight_bits=8, activation_bits=8, per_layer=None):
        check_bits(weight_bits, activation_bits)
        per_layer = {
            key: LayerOverride.from_dict(override, key)
            for key, override in (per_layer or {}).items()
        }
        self.weight_bits = weight_bits
        self.activation_bits = activation_bits
        self.per_layer = per_layer

    def override(self, path, layer):
        """The `LayerOverride` of `layer` at `path` (by path, then by name)."""
        return self.per_layer.get(path) or self.per_layer.get(layer.name) or LayerOverride()

    def skips(self, path, layer):
        return bool(self.override(path, layer).skip)

    def config_for(self, path, layer, quantize_output=True, folded=False):
        """A `DefaultQuantizeConfig` for `layer`, or None when it stays float.

        `folded`: the layer gets a BatchNormalization folded in, which keeps
        its own matmul (no per-channel 1x1 CONV_2D for a Dense then).
        """
        if isinstance(layer, PASSTHROUGH) or not is_supported(layer):
            return None
        override = self.override(path, layer)
        if override.skip:
            return None
        weight_attrs, per_axis, axis = weight_spec(layer) or ([], False, -1)
        flat = not folded and flat_matmul_spec(layer, build_shape_of(layer)) is not None
        if isinstance(layer, (L.Dense, L.EinsumDense)) and flat:
            # Per output channel through a 1x1 CONV_2D (see `QuantizeWrapper`).
            per_axis = True
        if isinstance(layer, L.Embedding):
            quantize_output = False  # a gather keeps the table's scale
        return DefaultQuantizeConfig(
            weight_attrs=weight_attrs,
            weight_bits=self.weight_bits if override.weight_bits is None else override.weight_bits,
            weight_per_axis=per_axis,
            weight_axis=axis,
            activation_bits=self.activation_bits
            if override.activation_bits is None
            else override.activation_bits,
            quantize_output=quantize_output
            if override.quantize_output is None
            else override.quantize_output,
        )

    def get_config(self):
        return {
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "per_layer": {key: override.get_config() for key, override in self.per_layer.items()},
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
