"""The quantize config built-in layers get: weights, bits, output or not."""

import keras

from tfcompress.core.checks import check_int
from tfcompress.quantization.quantize_config import QuantizeConfig
from tfcompress.quantization.quantizers import LastValueQuantizer, MovingAverageQuantizer


def check_bits(weight_bits, activation_bits, where=""):
    """Validates the bit widths a user can choose; returns them."""
    weight_bits = check_int(
        weight_bits,
        "weight_bits",
        2,
        8,
        label=f"`weight_bits`{where}",
        expected="an integer from 2 to 8 (TFLite stores weights as int8)",
    )
    if activation_bits not in (8, 16):
        raise ValueError(
            f"`activation_bits`{where} must be 8 (int8) or 16 (int16x8: 16-bit "
            f"activations, 8-bit weights). Received: activation_bits={activation_bits!r}"
        )
    return weight_bits, activation_bits


@keras.saving.register_keras_serializable(package="tfcompress")
class DefaultQuantizeConfig(QuantizeConfig):
    """Symmetric weights, asymmetric moving-average outputs (TFLite's scheme).

    Args:
        weight_attrs: names of the layer's variables to quantize ("kernel").
        weight_bits: 2..8; values lie on a narrow symmetric grid stored int8.
        weight_per_axis: one range per output channel instead of one per
            tensor. Conv layers; Dense/EinsumDense only on inputs of rank > 2,
            where `QuantizeWrapper` runs them as a 1x1 CONV_2D (the converter
            rejects per-axis weights for FULLY_CONNECTED).
        weight_axis: the channel axis for `weight_per_axis`.
        activation_bits: 8 (asymmetric int8) or 16 (symmetric int16).
        quantize_output: fake-quantize the layer's output.
    """

    def __init__(
        self,
        weight_attrs=(),
        weight_bits=8,
        weight_per_axis=False,
        weight_axis=-1,
        activation_bits=8,
        quantize_output=True,
    ):
        check_bits(weight_bits, activation_bits)
        self.weight_attrs = list(weight_attrs)
        self.weight_bits = weight_bits
        self.weight_per_axis = bool(weight_per_axis)
        self.weight_axis = int(weight_axis)
        self.activation_bits = activation_bits
        self.quantize_output = bool(quantize_output)

    def weight_quantizer(self):
        return LastValueQuantizer(
            self.weight_bits,
            self.weight_per_axis,
            symmetric=True,
            narrow_range=True,
            axis=self.weight_axis,
        )

    def activation_quantizer(self):
        wide = self.activation_bits == 16  # TFLite int16 activations: zero point 0
        return MovingAverageQuantizer(self.activation_bits, symmetric=wide, narrow_range=wide)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, name), self.weight_quantizer()) for name in self.weight_attrs]

    def get_activations_and_quantizers(self, layer):
        return []

    def get_output_quantizers(self, layer):
        return [self.activation_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {
            "weight_attrs": list(self.weight_attrs),
            "weight_bits": self.weight_bits,
            "weight_per_axis": self.weight_per_axis,
            "weight_axis": self.weight_axis,
            "activation_bits": self.activation_bits,
            "quantize_output": self.quantize_output,
        }
