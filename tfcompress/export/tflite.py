"""Keras 3 model -> verified `.tflite` flatbuffer."""

import dataclasses
import logging
import pathlib

from tfcompress.core.layer_tree import layers_of
from tfcompress.core.strip_wrappers import has_strippable_wrappers, strip_wrappers
from tfcompress.export import converter, post_training, representative, wrap
from tfcompress.export._tflite_checks import calibration_error, check_arguments, check_model
from tfcompress.export._verification_inputs import note_synthetic, verification_batch
from tfcompress.export.attention_masks import additive_attention_masks
from tfcompress.export.flatbuffer import op_names, read_model
from tfcompress.export.identity_multiplies import remove_identity_multiplies
from tfcompress.export.verify import (
    check_integer_io,
    float_matmuls,
    raise_on_failure,
    run_checks,
)

_LOG = logging.getLogger("tfcompress")


@dataclasses.dataclass
class ExportResult:
    """A converted model and what verification measured.

    Attributes:
        tflite_bytes: the flatbuffer.
        path: where it was written, or None.
        target: the export target.
        size_bytes: `len(tflite_bytes)`.
        ops: op names of the main subgraph, in execution order.
        checks: `{check name: {"passed": True/False/None, "detail": str, ...}}`
            for `builtin_ops`, `weights_present` and `outputs_match` (None:
            skipped, e.g. Flex ops no local interpreter can run); empty when
            `verify=False`.
        max_abs_error: largest absolute difference to Keras on the sample.
        max_relative_error: `max_abs_error` over the largest Keras value.
        cosine_similarity: lowest cosine similarity over the outputs.
        argmax_agreement: lowest fraction of equal argmax over the last axis
            (None when no output has a last axis above 1).
        rewrites: `{rewrite: ops changed}` after conversion: "attention_masks"
            (masked-softmax selects turned into ADD / MUL ops XNNPack runs,
            `tfcompress/export/attention_masks.py`) and "identity_multiplies"
            (MULs by 1 + 2^-22 that only served the conversion,
            `tfcompress/export/identity_multiplies.py`).
    """

    tflite_bytes: bytes = dataclasses.field(repr=False)
    path: str | None
    target: str
    size_bytes: int
    ops: list
    checks: dict
    max_abs_error: float | None = None
    max_relative_error: float | None = None
    cosine_similarity: float | None = None
    argmax_agreement: float | None = None
    rewrites: dict = dataclasses.field(default_factory=dict)


def _has_learned_ranges(model):
    """Whether a layer (a quantization-aware wrapper, or a user's own fake-quant
    layer whose class sets `carries_learned_ranges = True`) fixes the ranges."""
    return any(
        getattr(layer, "carries_learned_ranges", False) is True for layer in layers_of(model)
    )


def _strip(model):
    """The model with every wrapper but those carrying learned ranges stripped
    (untouched when it has none), whatever technique defined them."""
    return strip_wrappers(model) if has_strippable_wrappers(model) else model


def _outlier_aware(model, target):
    """Whether int8 calibration goes through `quantize_model` (float
    transformers) instead of the converter's per-tensor ranges."""
    return (
        target == "int8" and not _has_learned_ranges(model) and post_training.is_transformer(model)
    )


def to_tflite(
    model,
    target="float32",
    representative_data=None,
    int8_io=False,
    path=None,
    allow_flex=False,
    verify=True,
    sample=None,
    tolerance=None,
    batch_size=None,
    sequence_length=None,
    rewrites=True,
):
    """Converts a Keras 3 model to TFLite and checks the result.

    Targets:

    | target         | weights  | activations | outputs_match metric (default)   |
    |----------------|----------|-------------|----------------------------------|
    | "float32"      | float32  | float32     | max relative error <= 1e-4       |
    | "float16"      | float16  | float32     | max relative error <= 1e-2       |
    | "dynamic_int8" | int8     | float32*    | cosine distance <= 0.01          |
    | "int8"         | int8     | int8        | cosine distance <= 0.02          |
    | "int16x8"      | int8     | int16       | cosine distance <= 0.01          |

    (*) quantized on the fly inside each kernel. The relative error is the
    largest absolute difference over the largest Keras value; the cosine
    distance is `1 - cosine similarity` of each flattened output (worst output
    counts). "int8" needs `representative_data` unless the model was trained
    with fake-quant ops (a class with `carries_learned_ranges = True`: every
    tfcompress QAT wrapper, or a user's own fake-quant layer), whose ranges
    are used. A float transformer (attention or LayerNormalization
    layers) given `representative_data` for "int8" is not calibrated by the
    converter, whose one scale per tensor its outlier hidden dimensions
    defeat (all-MiniLM-L6-v2: sentence cosine 0.30), but through
    `tfcompress.quantization.quantize_model(representative_data=...)`:
    outlier channels with their own scales, SmoothQuant factors, LayerNorm
    and GELU left float; its fake-quant ranges are calibrated on the same
    data without training, then converted (`tfcompress/export/post_training.py`).
    Other models (CNNs) keep the converter's calibration. "int16x8" always
    needs `representative_data`; it works for models with integer inputs
    (token ids) through the work-around described in
    `tfcompress/export/int16x8.py`, with float fallback for the few ops that
    have no int16 kernel.

    `batch_size=1` fixes the batch dimension: every shape becomes static, so
    XNNPack takes graphs it otherwise splits around shape computations (the
    float projections of a keras-hub encoder; docs/DESIGN.md has the
    measurement). The model then
    only accepts batches of that size. `sequence_length=128` does the same for
    the token axis a keras-hub backbone leaves unknown (every input's second
    dimension, where unknown); with both, every shape is static.

    Any model is wrapped in a functional `keras.Model` over named
    `keras.Input`s (subclassed models need to be built, and `sample` when their
    input shape is unknown) and converted with `TFLiteConverter.from_keras_model`.
    Wrappers are stripped first with `tfcompress.core.strip_wrappers`, whatever
    the technique (pruning bakes its masks in); quantization-aware wrappers,
    which carry learned ranges, are kept for the converter.
    After conversion, attention masks become additive biases XNNPack runs
    (same outputs; about 20% faster on MiniLM) and the MULs by 1 + 2^-22 that
    quantization-aware models use to steer the converter are dropped (see
    `ExportResult.rewrites`).

    Verification (`verify=True`) runs three checks and raises if one fails:
    `builtin_ops` (no Flex/custom ops unless `allow_flex`; it also lists in
    `float_ops` the ops an integer target kept in float: TF 2.21 does so even
    under TFLITE_BUILTINS_INT8, e.g. SIN), `weights_present`
    (file >= 0.5 x params x bytes per param of the target: 4, 2 or 1) and
    `outputs_match` (the LiteRT outputs on `sample` against Keras, see the
    table). Without `sample` it uses up to 8 calibration samples, else
    synthetic data shaped like real inputs, and says so in the check's detail:
    floats in [0, 1); for token models, ids below the vocabulary size (a
    keras-hub backbone's, else the largest embedding table's), padding masks
    that are a prefix of ones and segment ids 0 (inputs named "*mask*",
    "*segment*" / "*type_id*"); batch 2, unknown dimensions 8. Pass `sample`
    to verify on real data. Per-token outputs of a model with a padding mask
    input are compared at the real tokens only.

    Args:
        model: a built Keras 3 model.
        target: see the table.
        representative_data: calibration inputs for "int8"/"int16x8": a numpy
            array (single input), a list (one array per input) or dict of
            arrays, a `tf.data.Dataset`, or a generator / callable yielding
            such batches. At most 500 samples are used.
        int8_io: integer model inputs and outputs (int8 for "int8", int16 for
            "int16x8"); `tfcompress.runtime` quantizes float data for them.
        path: file to write, or None.
        allow_flex: allow TensorFlow (Flex) ops that have no TFLite builtin.
        verify: run the checks.
        sample: one batch of inputs for `outputs_match` (an array, a list or
            a dict of arrays); also gives subclassed models their input specs.
        tolerance: bound for the target's metric instead of the default.
        batch_size: None (any batch) or the fixed batch size of every input.
            Calibration samples are grouped into batches of that size, and
            `sample` must have a multiple of it rows.
        sequence_length: None, or the size of every input's second dimension
            where the model leaves it unknown; calibration data and `sample`
            must then have that length.
        rewrites: apply the graph rewrites after conversion (additive
            attention masks, removal of the converter-steering MULs). False
            keeps the converter's graph as it is.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: invalid arguments, missing calibration data, Flex ops
            without `allow_flex`, `int8_io` inputs or outputs the converter
            left float32; `ExportVerificationError` (a ValueError) when
            a check fails.
        TypeError: `model` is not a Keras 3 model, or wrong argument types.

    Example:

    ```python
    result = tfcompress.export.to_tflite(
        model, target="int8", representative_data=x_train[:200], int8_io=True,
        path="model_int8.tflite")
    print(result.size_bytes, result.cosine_similarity)
    ```
    """
    check_arguments(
        target, int8_io, allow_flex, verify, tolerance, path, batch_size, sequence_length, rewrites
    )
    batch_size = None if batch_size is None else int(batch_size)
    sequence_length = None if sequence_length is None else int(sequence_length)
    check_model(model, target, representative_data)
    if representative_data is None and (
        target == "int16x8" or (target == "int8" and not _has_learned_ranges(model))
    ):
        raise calibration_error(target)

    model = _strip(model)
    wrapper, specs, sample = _prepare(model, sample, batch_size, sequence_length)
    converted, samples = _calibrated(
        model, wrapper, specs, target, representative_data, sample, batch_size, sequence_length
    )
    calibration = None if converted is not wrapper else samples
    content = converter.convert(converted, target, calibration, int8_io, allow_flex)
    content, applied = _rewrite(content, rewrites)
    parsed = read_model(content)  # the rewrites keep the input and output types
    if int8_io:
        check_integer_io(parsed, target, calibrated=representative_data is not None)
    if target == "int8" and representative_data is None:
        _warn_float_matmuls(parsed)
    checks, metrics = {}, {}
    if verify:
        batch, reference, synthetic = verification_batch(
            model, wrapper, specs, sample, samples, batch_size
        )
        checks, metrics = _verify(
            content, target, model, batch, reference, synthetic, allow_flex, tolerance, batch_size
        )
    if path is not None:
        path = pathlib.Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return ExportResult(
        tflite_bytes=content,
        path=None if path is None else str(path),
        target=target,
        size_bytes=len(content),
        ops=op_names(parsed),
        checks=checks,
        rewrites=applied,
        **metrics,
    )


def _warn_float_matmuls(parsed):
    """Warns when a quantization-aware model left matmuls in float32."""
    left = float_matmuls(parsed)
    if left:
        _LOG.warning(
            "int8 export: %s ops stayed float32, with float weights, because the "
            "quantization-aware model has no learned range for their inputs (an op "
            "between layers of a subclassed model, such as `keras.ops.relu`, gets no "
            "fake-quant). Pass representative_data=... (a few hundred training inputs) "
            "to calibrate those ranges, or use the layer (`keras.layers.ReLU`).",
            left,
        )


def _prepare(model, sample, batch_size, sequence_length):
    """`(functional wrapper, input specs, normalized sample)`; raises for a
    `sequence_length` no input takes or a `sample` the batch size does not divide."""
    wrapper, specs = wrap.functional_wrapper(model, sample, batch_size, sequence_length)
    if sequence_length is not None and not any(
        len(spec.shape) > 1 and spec.shape[1] == sequence_length for spec in specs
    ):
        raise ValueError(
            f"`sequence_length={sequence_length}` fixes the second dimension of inputs "
            f"that leave it unknown, but the model's inputs have shapes "
            f"{[spec.shape for spec in specs]}. Drop sequence_length."
        )
    if sample is not None:  # shapes and dtypes checked before converting
        sample = representative.normalize_batch(sample, specs, "sample")
        rows = len(next(iter(sample.values())))
        if batch_size is not None and rows % batch_size:
            raise ValueError(
                f"`sample` has {rows} rows, which batch_size={batch_size} does not "
                f"divide. Pass a multiple of {batch_size} rows."
            )
    return wrapper, specs, sample


def _calibrated(
    model, wrapper, specs, target, representative_data, sample, batch_size, sequence_length
):
    """`(model to convert, calibration samples or None)`. The model is `wrapper`
    unless int8 calibration went through `quantize_model` (`_outlier_aware`)."""
    if representative_data is None:
        return wrapper, None
    samples = representative.calibration_samples(representative_data, specs)
    converted = wrapper
    if _outlier_aware(model, target):
        quantized = post_training.quantize_for_int8(model, samples, specs, sample)
        if quantized is not None:
            converted = wrap.functional_wrapper(quantized, sample, batch_size, sequence_length)[0]
    if batch_size is not None and batch_size > 1:
        samples = _group(samples, batch_size)
    return converted, samples


def _rewrite(content, rewrites):
    """`(flatbuffer, {rewrite: ops changed})` after the post-conversion rewrites."""
    applied = {}
    if rewrites:
        for name, rewrite in (
            ("attention_masks", additive_attention_masks),
            ("identity_multiplies", remove_identity_multiplies),
        ):
            content, applied[name] = rewrite(content)
    return content, applied


def _verify(content, target, model, batch, reference, synthetic, allow_flex, tolerance, batch_size):
    """`(checks, ExportResult error metrics)`; raises `ExportVerificationError`
    when a check fails."""
    checks = run_checks(
        content,
        target,
        model.count_params(),
        batch,
        reference,
        allow_flex,
        tolerance,
        batch_size,
    )
    names = ("max_abs_error", "max_relative_error", "cosine_similarity", "argmax_agreement")
    metrics = {name: checks["outputs_match"].get(name) for name in names}
    if synthetic is not None:
        note_synthetic(checks["outputs_match"], synthetic)
    raise_on_failure(checks)
    return checks, metrics


def _group(samples, batch_size):
    """Calibration samples stacked `batch_size` at a time (a fixed-batch model);
    the last `len(samples) % batch_size` samples are left out."""
    if len(samples) < batch_size:
        raise ValueError(
            f"`representative_data` has {len(samples)} samples, fewer than one batch "
            f"of batch_size={batch_size}. Pass at least {batch_size} samples."
        )
    return [
        representative.stack(samples[i : i + batch_size])
        for i in range(0, len(samples) - batch_size + 1, batch_size)
    ]
