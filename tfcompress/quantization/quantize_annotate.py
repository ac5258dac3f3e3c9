"""Mark layers for quantization (TFMOT's `quantize_annotate_*`)."""

import keras

from tfcompress.core.checks import ensure_keras3_layer, ensure_keras3_model
from tfcompress.core.transform import transform_layers
from tfcompress.core.wrapper import CompressionWrapper, build_shape_of
from tfcompress.quantization.quantize_config import QuantizeConfig, deserialize, serialize
from tfcompress.quantization.quantize_scheme import is_supported


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeAnnotate(CompressionWrapper):
    """Marks `layer` for `quantize_apply`; computes exactly what `layer` does.

    Args:
        layer: the layer to quantize later.
        quantize_config: optional `QuantizeConfig`; None uses the scheme's.
        **kwargs: base layer arguments; `name` defaults to the layer's name
            so per-layer options and paths stay the same.
    """

    def __init__(self, layer, quantize_config=None, **kwargs):
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.quantize_config = quantize_config

    def get_config(self):
        return {**super().get_config(), "quantize_config": serialize(self.quantize_config)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(
            config["layer"], custom_objects=custom_objects
        )
        config["quantize_config"] = deserialize(config.get("quantize_config"))
        return cls(**config)


def quantize_annotate_layer(to_annotate, quantize_config=None):
    """Marks one layer to be quantized by `quantize_apply`.

    Args:
        to_annotate: a Keras 3 layer (built or not).
        quantize_config: a `QuantizeConfig`; required for layers the default
            scheme does not know (it says how to quantize them).

    Returns:
        A `QuantizeAnnotate` wrapping `to_annotate`.

    Raises:
        TypeError: for non-Keras-3 layers or a wrong `quantize_config` type.
        ValueError: for a layer the default scheme cannot quantize and no config.

    Example:
        >>> model = keras.Sequential([keras.Input((4,)),
        ...     tfcompress.quantization.quantize_annotate_layer(keras.layers.Dense(2))])
        >>> qat = tfcompress.quantization.quantize_apply(model)
    """
    ensure_keras3_layer(to_annotate, "to_annotate")
    if quantize_config is not None and not isinstance(quantize_config, QuantizeConfig):
        raise TypeError(
            "`quantize_config` must be a `tfcompress.quantization.QuantizeConfig` or None. "
            f"Received: quantize_config={quantize_config!r}"
        )
    if quantize_config is None and not is_supported(to_annotate):
        raise ValueError(
            f"Layer {to_annotate.name!r} of type {type(to_annotate).__name__} is not supported "
            "by the default quantization scheme (it knows Dense, EinsumDense, Conv, "
            "DepthwiseConv2D, Embedding, activations, Add/Concatenate, pooling, BatchNormalization). "
            "Pass `quantize_config=` a `tfcompress.quantization.QuantizeConfig` saying how to "
            "quantize it, or leave it float."
        )
    if isinstance(to_annotate, QuantizeAnnotate):
        return to_annotate
    annotated = QuantizeAnnotate(to_annotate, quantize_config)
    if to_annotate.built:
        annotated.build(build_shape_of(to_annotate))
    return annotated


def quantize_annotate_model(to_annotate):
    """Marks every layer the default scheme supports (a copy of the model).

    Args:
        to_annotate: a built Keras 3 model.

    Returns:
        A copy of the model, same class, with supported layers wrapped in
        `QuantizeAnnotate`.

    Example:
        >>> annotated = tfcompress.quantization.quantize_annotate_model(model)
        >>> qat = tfcompress.quantization.quantize_apply(annotated)
    """
    ensure_keras3_model(to_annotate, "to_annotate")

    def annotate(ref):
        if isinstance(ref.layer, keras.Model) or not is_supported(ref.layer):
            return None
        return quantize_annotate_layer(ref.layer)

    model, _ = transform_layers(to_annotate, annotate)
    return model
