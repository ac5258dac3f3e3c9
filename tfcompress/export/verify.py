"""Checks that an exported `.tflite` file is usable: ops, weights and outputs."""

import numpy as np

from tfcompress import runtime
from tfcompress.export import flatbuffer
from tfcompress.export.representative import merge_chunks, split_rows

# Error metric and default bound per target. Float targets bound the largest
# absolute error relative to the largest reference value; integer targets bound
# the cosine distance (1 - cosine similarity) of each flattened output, since
# quantization error scales with each tensor's range. Worst values measured on
# 3 seeds of the test models (Dense 32-64-10, small Conv, 1-layer BERT with
# 64 random calibration sentences), relative error / cosine distance:
#   float32       2.6e-7 / 1e-14     float16  4.3e-4 / 7e-8
#   dynamic_int8  5.9e-3 / 1.1e-5    int8     2.0e-1 / 2.6e-3 (BERT; Dense/Conv 5e-5)
#   int16x8       1.9e-1 / 1.7e-3 (BERT, calibration coverage: 5e-6 to 1e-5
#                 with 400 sentences; Dense/Conv 2e-5)
# The float bounds leave >20x margin; the integer ones are cosine >= 0.99
# (0.98 for int8), where a broken export (lost mask, clipped ranges, missing
# weights) lands far above: e.g. 0.41-0.47 for a masked softmax.
TOLERANCES = {
    "float32": ("max_relative_error", 1e-4),
    "float16": ("max_relative_error", 1e-2),
    "dynamic_int8": ("cosine_distance", 0.01),
    "int8": ("cosine_distance", 0.02),
    "int16x8": ("cosine_distance", 0.01),
}
# Lower bound on the file size: parameters x bytes per parameter x slack. The
# slack absorbs BatchNorm folding and small tensors the converter keeps in
# another type; a file without its weights is orders of magnitude below it.
BYTES_PER_PARAM = {
    "float32": 4,
    "float16": 2,
    "dynamic_int8": 1,
    "int8": 1,
    "int16x8": 1,
}
WEIGHT_SLACK = 0.5

CHECKS = ("builtin_ops", "weights_present", "outputs_match")


class ExportVerificationError(ValueError):
    """A converted model failed a verification check.

    Attributes:
        failed: names of the failed checks (from `builtin_ops`,
            `weights_present`, `outputs_match`).
        checks: every check's result dict (`passed`: True, False or None for
            skipped; `detail`; metrics).
    """

    def __init__(self, failed, checks):
        self.failed = list(failed)
        self.checks = checks
        details = "; ".join(f"{name}: {checks[name]['detail']}" for name in self.failed)
        super().__init__(
            f"TFLite export verification failed check(s) {self.failed}: {details}. "
            "Pass verify=False to keep the file anyway, or tolerance= to loosen "
            "outputs_match."
        )


def check_integer_io(model, target, calibrated):
    """Raises when `int8_io=True` left an input or output of `model` (a
    `flatbuffer.read_model` result) float32.

    The converter falls back to float silently (it only logs a warning) where
    no range is known for an input: in a quantization-aware subclassed model
    whose first layer reads an op's output (`inputs / 16`) instead of the
    model input, nothing quantizes that input.
    """
    subgraph = model.subgraphs[0]
    left = {
        role: [
            subgraph.tensors[i].name.decode(errors="replace")
            for i in indices
            if flatbuffer.type_name(subgraph.tensors[i]) == "FLOAT32"
        ]
        for role, indices in (("inputs", subgraph.inputs), ("outputs", subgraph.outputs))
    }
    if not any(left.values()):
        return
    where = " and ".join(f"{role} {names}" for role, names in left.items() if names)
    integer = "int16" if target == "int16x8" else "int8"
    fix = (
        "Some op at the model's edge has no integer kernel: drop int8_io, or end "
        "the model with an op that has one."
        if calibrated
        else "The quantization-aware model carries no learned range there (in a "
        "subclassed model an op on the input before its first layer, such as a scale "
        "or a cast, or at the end after its last layer, gets no fake-quant). Pass "
        "representative_data=... (a few hundred training inputs): the converter "
        "calibrates the ranges the model does not carry."
    )
    raise ValueError(
        f"`int8_io=True` asks for {integer} inputs and outputs, but the converted "
        f"{target} model's {where} stayed float32. {fix}"
    )


_MATMULS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"}


def _float_ops(model):
    """Names of the main subgraph's ops (besides DEQUANTIZE) writing float32."""
    subgraph = model.subgraphs[0]
    return {
        flatbuffer.op_name(model, op)
        for op in subgraph.operators
        if len(op.outputs)
        and flatbuffer.type_name(subgraph.tensors[op.outputs[0]]) == "FLOAT32"
        and flatbuffer.op_name(model, op) != "DEQUANTIZE"
    }


def float_matmuls(model):
    """The matmul and convolution ops of `model` (a `flatbuffer.read_model`
    result) that write float32, sorted."""
    return sorted(_float_ops(model) & _MATMULS)


def check_ops(content, allow_flex=False):
    """Builtin ops only (Flex ops too when `allow_flex`); custom ops always fail.

    Also lists `float_ops`, the ops (besides DEQUANTIZE) writing float32: for
    the integer targets these are the ops the converter kept in float, which
    TFLite Micro and integer-only accelerators cannot run.
    """
    model = flatbuffer.read_model(content)
    float_ops = sorted(_float_ops(model))
    names = [
        flatbuffer.op_name(model, op)
        for subgraph in model.subgraphs
        for op in subgraph.operators
        if flatbuffer.is_custom(model, op)
    ]
    flex = sorted({n for n in names if n.startswith("Flex")})
    custom = sorted({n for n in names if not n.startswith("Flex")})
    bad = custom + ([] if allow_flex else flex)
    if bad:
        detail = f"non-builtin ops {bad}" + (
            ""
            if allow_flex or not flex
            else " (Flex ops need allow_flex=True and a runtime with the Flex delegate)"
        )
    else:
        detail = "builtin ops only" + (f" plus Flex ops {flex}" if flex else "")
    return {
        "passed": not bad,
        "detail": detail,
        "flex_ops": flex,
        "custom_ops": custom,
        "float_ops": float_ops,
    }


def check_weights(content, target, param_count):
    """The file is at least `WEIGHT_SLACK` x the parameter bytes of the target."""
    expected = int(WEIGHT_SLACK * param_count * BYTES_PER_PARAM[target])
    passed = len(content) >= expected
    detail = (
        f"file is {len(content)} bytes; expected at least {expected} "
        f"({WEIGHT_SLACK} x {param_count} params x {BYTES_PER_PARAM[target]} B "
        f"for {target})"
    )
    if not passed:
        detail += ": the weights are missing from the flatbuffer"
    return {
        "passed": passed,
        "detail": detail,
        "size_bytes": len(content),
        "min_bytes": expected,
    }


def padding_mask(sample):
    """The `(batch, sequence)` padding mask among a token model's inputs (an
    integer input with "mask" in its name, of 0s and 1s, whose shape is the
    first two axes of another input: the token ids, or float embeddings), or
    None.

    keras-hub's masked LMs also take `mask_positions`, integer indices of
    shape `(batch, predictions)`: used as a mask it would scale their
    per-prediction outputs by the indices and hide errors at index 0.
    """
    arrays = {name: np.asarray(value) for name, value in sample.items()}
    for name, value in arrays.items():
        if not ("mask" in name.lower() and value.ndim == 2 and value.dtype.kind in "iub"):
            continue
        if not np.isin(value, (0, 1)).all():
            continue
        if any(
            other != name and tokens.shape[:2] == value.shape for other, tokens in arrays.items()
        ):
            return value
    return None


def _per_token(value, mask):
    """Whether `value` is a `(batch, sequence, features...)` per-token output.

    A 2-D output is taken as per-example: `(batch, hidden)` pooled features
    match a `(batch, sequence)` mask whenever hidden == sequence (384 and
    384, say), and masking them would hide errors in real features.
    """
    return mask is not None and value.ndim >= 3 and value.shape[:2] == mask.shape


def _unpadded(value, mask):
    """`value` with the padded positions zeroed, when it is a per-token
    output (see `_per_token`); unchanged otherwise."""
    if not _per_token(value, mask):
        return value
    return value * mask.reshape(mask.shape + (1,) * (value.ndim - 2))


def compare(outputs, reference, mask=None):
    """Error metrics between `{name: array}` outputs and reference outputs.

    With a `(batch, sequence)` padding `mask`, per-token outputs are compared
    on the real tokens only: what a model computes at padded positions is
    read by nothing (all-MiniLM-L6-v2 int8: cosine distance 0.0096 over the
    tokens, 0.031 with the padding).
    """
    metrics = {
        "max_abs_error": 0.0,
        "max_relative_error": 0.0,
        "cosine_similarity": 1.0,
    }
    agreements = []
    for name, ref in reference.items():
        out = np.asarray(outputs[name], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if out.shape != ref.shape:
            raise ValueError(f"output {name!r} has shape {out.shape}, Keras gives {ref.shape}")
        out, ref = _unpadded(out, mask), _unpadded(ref, mask)
        if not np.all(np.isfinite(out)):
            raise ValueError(f"output {name!r} has NaN or infinite values")
        error = float(np.max(np.abs(out - ref))) if out.size else 0.0
        scale = float(np.max(np.abs(ref))) if ref.size else 0.0
        norms = np.linalg.norm(out) * np.linalg.norm(ref)
        cosine = float(out.ravel() @ ref.ravel() / norms) if norms > 0 else float(error == 0.0)
        metrics["max_abs_error"] = max(metrics["max_abs_error"], error)
        metrics["max_relative_error"] = max(
            metrics["max_relative_error"], error / max(scale, 1e-12)
        )
        metrics["cosine_similarity"] = min(metrics["cosine_similarity"], cosine)
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            same = out.argmax(-1) == ref.argmax(-1)
            if _per_token(ref, mask):
                # Zeroed padded positions agree trivially: count real tokens.
                real = (
                    np.broadcast_to(mask.reshape(mask.shape + (1,) * (same.ndim - 2)), same.shape)
                    != 0
                )
                same = same[real] if real.any() else np.ones(1, bool)
            agreements.append(float(np.mean(same)))
    metrics["argmax_agreement"] = min(agreements) if agreements else None
    return metrics


def _run(model, sample, batch_size):
    """The model's outputs on `sample`, in chunks of `batch_size` rows if given."""
    if batch_size is None:
        return model.run(sample)
    chunks = [model.run(chunk) for chunk in split_rows(sample, batch_size)]
    merged = merge_chunks([c if isinstance(c, dict) else {None: c} for c in chunks])
    return merged[None] if None in merged else merged


def check_outputs(content, target, sample, reference, tolerance=None, flex_ops=(), batch_size=None):
    """Runs the file on `sample` and compares with the Keras `reference` outputs.

    `passed` is None (skipped) when the model has Flex ops and the installed
    interpreter cannot run them. A model with a fixed `batch_size` runs on
    `sample` in chunks of that many rows. When `sample` has a padding mask,
    per-token outputs count at the real tokens only (see `compare`).
    """
    metric, default = TOLERANCES[target]
    bound = default if tolerance is None else tolerance
    try:
        model = runtime.load(content)
    except ValueError as e:
        return {
            "passed": False,
            "detail": f"LiteRT cannot load the file: {e}",
            "metric": metric,
            "tolerance": bound,
        }
    try:
        outputs = _run(model, sample, batch_size)
        if not isinstance(outputs, dict):
            outputs = {next(iter(reference)): outputs}
        missing = sorted(set(reference) - set(outputs))
        if missing:
            raise ValueError(f"outputs {missing} are missing (TFLite has {sorted(outputs)})")
        mask = padding_mask(sample)
        metrics = compare(outputs, reference, mask)
    except (ValueError, RuntimeError, TypeError) as e:
        if flex_ops and "Select TensorFlow op" in str(e):
            return {
                "passed": None,
                "metric": metric,
                "tolerance": bound,
                "detail": (
                    f"not run: Flex ops {list(flex_ops)} need an interpreter linked with "
                    f"the Flex delegate and {model.backend} has none"
                ),
            }
        return {
            "passed": False,
            "detail": f"could not compare outputs: {e}",
            "metric": metric,
            "tolerance": bound,
        }
    value = (
        metrics["max_relative_error"]
        if metric == "max_relative_error"
        else 1.0 - metrics["cosine_similarity"]
    )
    passed = value <= bound
    detail = f"{metric} {value:.3g} {'<=' if passed else '>'} tolerance {bound:.3g}"
    if any(_per_token(np.asarray(ref), mask) for ref in reference.values()):
        detail += " (padded positions left out)"
    return {
        "passed": passed,
        "detail": detail,
        "metric": metric,
        "value": value,
        "tolerance": bound,
        **metrics,
    }


def run_checks(
    content,
    target,
    param_count,
    sample,
    reference,
    allow_flex=False,
    tolerance=None,
    batch_size=None,
):
    """Runs every check and returns `{check name: result dict}`.

    Args:
        content: the flatbuffer bytes.
        target: the export target (a key of `TOLERANCES`).
        param_count: parameters of the Keras model.
        sample: `{input name: array}` to run.
        reference: `{output name: array}` the Keras model gives on `sample`.
        allow_flex: accept Flex (TF Select) ops.
        tolerance: bound for the target's metric, overriding `TOLERANCES`.
        batch_size: the model's fixed batch dimension, or None.
    """
    ops = check_ops(content, allow_flex)
    return {
        "builtin_ops": ops,
        "weights_present": check_weights(content, target, param_count),
        "outputs_match": check_outputs(
            content, target, sample, reference, tolerance, ops["flex_ops"], batch_size
        ),
    }


def raise_on_failure(checks):
    """Raises `ExportVerificationError` naming every failed check."""
    failed = [name for name in CHECKS if name in checks and checks[name]["passed"] is False]
    if failed:
        raise ExportVerificationError(failed, checks)
