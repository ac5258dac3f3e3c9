"""The interface that says how one layer is quantized (TFMOT's name)."""

import abc

import keras


class QuantizeConfig(abc.ABC):
    """Which weights and outputs of a layer are fake-quantized, and how.

    Same methods as `tfmot.quantization.keras.QuantizeConfig`, so existing
    configs port by changing the import. `QuantizeWrapper` substitutes the
    quantized weights for the variables while the layer runs, so
    `set_quantize_weights` / `set_quantize_activations` have no-op defaults
    here: configs do not need to assign layer attributes. Quantizers returned
    by `get_activations_and_quantizers` are applied to the wrapped layer's
    output, which is right for every Keras layer whose activation is its last
    step (Dense, Conv, EinsumDense).

    Example:
        >>> class KernelOnly(tfcompress.quantization.QuantizeConfig):
        ...     def get_weights_and_quantizers(self, layer):
        ...         return [(layer.kernel, tfcompress.quantization.LastValueQuantizer(
        ...             num_bits=4, per_axis=False, symmetric=True, narrow_range=True))]
        ...     def get_activations_and_quantizers(self, layer):
        ...         return []
        ...     def get_output_quantizers(self, layer):
        ...         return []
        ...     def get_config(self):
        ...         return {}
    """

    @abc.abstractmethod
    def get_weights_and_quantizers(self, layer):
        """`[(variable, Quantizer), ...]` for the weights to quantize."""

    @abc.abstractmethod
    def get_activations_and_quantizers(self, layer):
        """`[(activation, Quantizer), ...]`; applied to the layer's output."""

    def set_quantize_weights(self, layer, quantize_weights):
        """Unused by `QuantizeWrapper` (it substitutes variables)."""

    def set_quantize_activations(self, layer, quantize_activations):
        """Unused by `QuantizeWrapper` (it quantizes the output)."""

    @abc.abstractmethod
    def get_output_quantizers(self, layer):
        """`[Quantizer]` applied to the layer's output (at most one)."""

    @abc.abstractmethod
    def get_config(self):
        """A flat dict of the constructor arguments."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def serialize(obj):
    return keras.saving.serialize_keras_object(obj)


def deserialize(config):
    if config is None or not isinstance(config, dict):
        return config
    return keras.saving.deserialize_keras_object(config)
