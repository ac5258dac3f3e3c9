"""One call from a float model to a quantization-aware one (TFMOT's name)."""

from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.quantization.layer_override import LayerOverride
from tfcompress.quantization.outlier_channels import find_outlier_channels
from tfcompress.quantization.quantize_apply import check_preserve_sparsity, quantize
from tfcompress.quantization.quantize_scheme import QuantizeScheme


def quantize_model(
    to_quantize,
    quantized_layer_name_prefix=None,
    weight_bits=8,
    activation_bits=8,
    per_layer=None,
    fold_batch_norm=True,
    preserve_sparsity=None,
    inplace=False,
    representative_data=None,
    outlier_ratio=8.0,
    smoothing=0.5,
):
    """Makes a quantization-aware copy of a float model.

    Every supported layer is wrapped (weights and outputs fake-quantized as
    TFLite's int8 kernels will compute them), Conv/Dense+BatchNormalization
    pairs are folded, float model inputs are quantized. Train the result for
    a few epochs, then convert it with `tf.lite.TFLiteConverter` and
    `Optimize.DEFAULT`: no representative dataset is needed.

    Args:
        to_quantize: a built Keras 3 model (Sequential, functional,
            subclassed, keras-hub); it is not modified.
        quantized_layer_name_prefix: prefix of wrapper names ("quant_").
        weight_bits: 2..8 bits for weights.
        activation_bits: 8, or 16 for TFLite's int16x8 mode.
        per_layer: `{layer name or path: LayerOverride}` (or dicts of its
            fields, `{"dense": {"weight_bits": 4}}`, which are converted).
        fold_batch_norm: fold BatchNormalization into the layer before it.
        preserve_sparsity: None (default) keeps every zero of the layers
            whose quantized weights are already a third or more exact zeros
            (a pruned, stripped model), through training and into the int8
            export, and logs those layers (INFO, logger "tfcompress"). True
            keeps the zeros of every layer, False lets every weight train.
        inplace: quantize `to_quantize` itself instead of a copy; needed for
            subclassed models without a `get_config`.
        representative_data: optional model inputs (arrays, a dict of arrays
            or batches). With them, Dense/EinsumDense outputs with a few
            channels far larger than the rest (transformers' outlier
            dimensions), and those reading GELU outputs with such channels,
            get them computed with their own int8 scales (see
            `find_outlier_channels`); `per_layer` entries win.
        outlier_ratio: a channel whose range exceeds this many times the
            median channel range of its layer is an outlier.
        smoothing: with `representative_data`, LayerNormalization outputs
            read only by Dense/EinsumDense stay float and each of those
            matmuls divides its input by SmoothQuant factors with this
            migration strength (0 < alpha < 1) before quantizing it; None
            keeps LayerNorm outputs quantized.

    Returns:
        The quantization-aware model (same class as `to_quantize`).

    Raises:
        TypeError: when `to_quantize` is not a Keras 3 model.
        TypeError: when `preserve_sparsity` is not None or a bool.
        ValueError: for bits out of range or malformed `per_layer`.

    Example:
        >>> qat = tfcompress.quantization.quantize_model(model, weight_bits=8)
        >>> qat.compile("adam", "sparse_categorical_crossentropy")
        >>> qat.fit(x, y, epochs=3)
    """
    ensure_keras3_model(to_quantize, "to_quantize")
    ensure_built(to_quantize, "to_quantize")
    check_preserve_sparsity(preserve_sparsity)
    # Validates `per_layer` before the (slow) float pass runs.
    scheme = QuantizeScheme(weight_bits, activation_bits, per_layer)
    if representative_data is not None:
        found = find_outlier_channels(
            to_quantize, representative_data, outlier_ratio, smoothing=smoothing
        )
        scheme = QuantizeScheme(weight_bits, activation_bits, _merge(found, scheme.per_layer))
    prefix = "quant_" if quantized_layer_name_prefix is None else quantized_layer_name_prefix
    return quantize(to_quantize, scheme, None, prefix, preserve_sparsity, fold_batch_norm, inplace)


def _merge(found, given):
    """`given` overrides win over the `found` ones, field by field; a given
    output split replaces the found output scales."""
    merged = dict(given)
    for path, override in found.items():
        user = given.get(path, LayerOverride())
        fields = {**override, **user}
        if user.outlier_channels:
            fields.pop("output_scale", None)
        merged[path] = LayerOverride(**fields)
    return merged
