"""Turn an annotated model into a quantization-aware one (TFMOT's name)."""

import logging

import keras
import numpy as np

from tfcompress.core import _keras_internals as internals
from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.layer_tree import layers_of, walk_layers
from tfcompress.core.transform import copy_model, is_wrapper, transform_layers
from tfcompress.core.wrapper import build_shape_of
from tfcompress.quantization._input_readers import model_input_readers
from tfcompress.quantization.default_quantize_config import DefaultQuantizeConfig
from tfcompress.quantization.fold_batch_norm_wrapper import FoldBatchNormQuantizeWrapper
from tfcompress.quantization.graph_plan import Plan, plan_graph
from tfcompress.quantization.quantize_annotate import QuantizeAnnotate
from tfcompress.quantization.quantize_scheme import QuantizeScheme
from tfcompress.quantization.quantize_wrapper import QuantizeWrapper

_LOG = logging.getLogger("tfcompress")

# A trained float kernel has almost no exact zeros; a pruned one has at least
# the target fraction. A third separates the two with room on both sides.
_SPARSE_FRACTION = 1 / 3


def _is_graph(layer):
    return isinstance(layer, keras.Sequential) or internals.has_graph(layer)


def _reads_unquantized(ref, inner, plan):
    """Whether the layer's input needs its own quantizer.

    In functional graphs the plan knows the producer. Inside subclassed and
    keras-hub layers it does not; there only the output projection of a
    MultiHeadAttention gets one, as it reads an einsum of the attention
    probabilities (an op, not a layer) that nothing else quantizes. A second
    quantizer right after another one would make the converter fail on
    "quantization parameters violate the same scale constraint".
    """
    if id(ref.layer) in plan.quantize_input:
        return True
    return _is_attention_output(ref, inner)


def _is_attention_output(ref, inner):
    parent = ref.parent
    return (
        isinstance(parent, keras.layers.MultiHeadAttention)
        and parent.built
        and inner is internals.attention_projections(parent).output
    )


def _is_already_sparse(layer, config):
    """Whether the weights `config` quantizes are a third or more exact zeros.

    Weights that are all zeros are not pruned but zero-initialised (a residual
    branch or an adapter meant to start at zero): masking them would freeze
    the layer at zero, so they train.
    """
    values = [np.asarray(variable) for variable, _ in config.get_weights_and_quantizers(layer)]
    size = sum(value.size for value in values)
    zeros = sum(int(np.sum(value == 0)) for value in values)
    return 0 < size and _SPARSE_FRACTION * size <= zeros < size


def check_preserve_sparsity(preserve_sparsity):
    """Raises unless `preserve_sparsity` is None, True or False."""
    if preserve_sparsity is not None and not isinstance(preserve_sparsity, bool):
        raise TypeError(
            "`preserve_sparsity` must be None (keep the zeros of already pruned layers), True "
            f"or False. Received: preserve_sparsity={preserve_sparsity!r}"
        )


def _wrap(ref, inner, config, plan, scheme, prefix, preserve_sparsity):
    key = id(ref.layer)
    input_quantizer = None
    override = scheme.override(ref.path, inner)
    asked = override.input_scale is not None or override.quantize_input
    if _reads_unquantized(ref, inner, plan) or asked:
        input_quantizer = DefaultQuantizeConfig(
            activation_bits=scheme.activation_bits
        ).activation_quantizer()
    kwargs = dict(
        input_quantizer=input_quantizer,
        preserve_sparsity=preserve_sparsity,
        name=prefix + inner.name,
        outlier_channels=override.outlier_channels or None,
        input_outlier_channels=override.input_outlier_channels or None,
        input_scale=override.input_scale,
        output_scale=override.output_scale,
    )
    if input_quantizer is not None and (
        _is_attention_output(ref, inner) or override.quantize_input
    ):
        kwargs["isolate_input"] = True  # the producer stays float in TFLite
    if override.input_outlier_channels:
        kwargs["input_quantizer"] = None  # the split quantizes its input itself
    if key in plan.float_gather:
        kwargs["embedding_channel_scales"] = True
    if key in plan.fold:
        batch_norm = plan.fold[key]
        batch_norm = batch_norm.layer if isinstance(batch_norm, QuantizeAnnotate) else batch_norm
        wrapper = FoldBatchNormQuantizeWrapper(
            inner, config, epsilon=batch_norm.epsilon, momentum=batch_norm.momentum, **kwargs
        )
        wrapper.build(build_shape_of(inner))
        wrapper.set_batch_norm(batch_norm)
        return wrapper
    wrapper = QuantizeWrapper(inner, config, **kwargs)
    wrapper.build(build_shape_of(inner))
    return wrapper


def quantize(
    model, scheme, selected_paths, prefix, preserve_sparsity, fold_batch_norm=True, inplace=False
):
    """Shared body of `quantize_apply` and `quantize_model`.

    Args:
        model: a built Keras 3 model (not modified unless `inplace`).
        scheme: a `QuantizeScheme`.
        selected_paths: `{path: QuantizeConfig or None}` of layers to quantize,
            or None for every layer the scheme supports.
        prefix: prepended to the names of quantized layers.
        preserve_sparsity: see `QuantizeWrapper`; None keeps the zeros of
            the layers `_is_already_sparse` finds (pruned ones) and logs them.
        fold_batch_norm: fold BatchNormalization into the Conv/Dense before it.
        inplace: quantize `model` itself instead of a copy (for subclassed
            models that cannot be rebuilt from their config).

    Returns:
        The quantization-aware copy of `model`.
    """
    if not inplace:
        model = copy_model(model)
    paths = {
        id(ref.layer): ref.path for ref in walk_layers(model, descend=lambda l: not is_wrapper(l))
    }

    def config_of(layer, quantize_output=True, folded=False):
        path = paths.get(id(layer), layer.name)
        if selected_paths is not None and path not in selected_paths:
            return None
        explicit = layer.quantize_config if isinstance(layer, QuantizeAnnotate) else None
        explicit = explicit or (selected_paths or {}).get(path)
        if explicit is not None:
            return explicit
        inner = layer.layer if isinstance(layer, QuantizeAnnotate) else layer
        return scheme.config_for(path, inner, quantize_output, folded)

    plan = Plan()

    def selected(layer):
        return config_of(layer) is not None

    def float_output(layer):
        inner = layer.layer if isinstance(layer, QuantizeAnnotate) else layer
        return _has_float_output(scheme.override(paths.get(id(layer), layer.name), inner))

    containers = layers_of(model)
    for container in filter(_is_graph, containers):
        plan_graph(
            container,
            selected,
            plan,
            top_level=container is model,
            fold=fold_batch_norm,
            float_output=float_output,
        )

    if not _is_graph(model):
        plan.quantize_input |= model_input_readers(model, selected)

    kept = []  # paths whose zeros `preserve_sparsity=None` keeps

    def transform(ref):
        layer = ref.layer
        inner = layer.layer if isinstance(layer, QuantizeAnnotate) else layer
        if id(layer) in plan.folded_bn:
            identity = keras.layers.Identity(name=inner.name)
            identity.build(build_shape_of(inner))
            return identity
        if isinstance(layer, keras.Model) and not isinstance(layer, QuantizeAnnotate):
            return None
        config = config_of(
            layer, quantize_output=id(layer) not in plan.no_output, folded=id(layer) in plan.fold
        )
        if config is None:
            return inner if inner is not layer else None
        preserve = preserve_sparsity
        if preserve is None:
            preserve = _is_already_sparse(inner, config)
            if preserve:
                kept.append(ref.path)
        return _wrap(ref, inner, config, plan, scheme, prefix, preserve)

    model, _ = transform_layers(model, transform, inplace=True)
    _log_kept(kept)
    return model


def _has_float_output(override):
    """An outlier split adds its two int8 halves in float, output scales
    multiply in float; a layer told not to quantize its output leaves it
    float."""
    split = override.outlier_channels or override.input_outlier_channels
    return bool(split) or override.output_scale is not None or override.quantize_output is False


def _log_kept(kept):
    if kept:
        _LOG.info(
            "Keeping the zeros of %d already sparse (pruned) layers through quantization-aware "
            "training: %s. Pass preserve_sparsity=False to let them train.",
            len(kept),
            kept,
        )


def quantize_apply(model, scheme=None, quantized_layer_name_prefix=None, preserve_sparsity=None):
    """Quantizes the layers marked with `quantize_annotate_*`.

    Args:
        model: a built Keras 3 model containing `QuantizeAnnotate` layers.
        scheme: a `QuantizeScheme` (default: 8-bit weights and activations).
        quantized_layer_name_prefix: prefix of the quantized layers' names
            (default "quant_").
        preserve_sparsity: as in `quantize_model`: None keeps the zeros of
            pruned layers, True of every layer, False of none.

    Returns:
        A quantization-aware copy of `model`, same class, ready to `fit`.

    Raises:
        TypeError: for non-Keras-3 models, a wrong `scheme` type or a
            `preserve_sparsity` that is not None or a bool.
        ValueError: when nothing is annotated.

    Example:
        >>> annotated = tfcompress.quantization.quantize_annotate_model(model)
        >>> qat = tfcompress.quantization.quantize_apply(annotated)
    """
    ensure_keras3_model(model, "model")
    ensure_built(model)
    check_preserve_sparsity(preserve_sparsity)
    scheme = scheme if scheme is not None else QuantizeScheme()
    if not isinstance(scheme, QuantizeScheme):
        raise TypeError(
            "`scheme` must be a `tfcompress.quantization.QuantizeScheme` or None. "
            f"Received: scheme={scheme!r}"
        )
    annotated = {
        ref.path: ref.layer.quantize_config
        for ref in walk_layers(model, descend=lambda l: not is_wrapper(l))
        if isinstance(ref.layer, QuantizeAnnotate)
    }
    if not annotated:
        raise ValueError(
            f"`model` ({model.name!r}) has no layer marked for quantization. Mark layers with "
            "`tfcompress.quantization.quantize_annotate_layer` / `quantize_annotate_model`, "
            "or call `tfcompress.quantization.quantize_model(model)` to quantize everything."
        )
    prefix = "quant_" if quantized_layer_name_prefix is None else quantized_layer_name_prefix
    return quantize(model, scheme, annotated, prefix, preserve_sparsity)
