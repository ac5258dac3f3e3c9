"""Verification of an exported generator: builtin ops, weights, decode logits vs Keras."""

import numpy as np

from tfcompress.export import verify
from tfcompress.export.generator.graph import cache_names
from tfcompress.export.generator.keras_reference import keras_step_logits

DEFAULT_TOLERANCE = {
    "float32": 1e-4,
    "float16": 2e-2,
    "dynamic_int8": 0.15,
    "int8_weights": 0.15,
    "mixed_int8": 0.15,
}
VERIFY_STEPS = 4


def decode_steps(content, meta, token_ids):
    """Logits [len(token_ids), V] from the file's `decode`, one token per step."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content, num_threads=2).get_signature_runner("decode")
    caches = {name: np.zeros(shape, np.float32) for name, shape in cache_shapes(meta).items()}
    logits = []
    for position, token in enumerate(token_ids):
        out = runner(
            tokens=np.array([[token]], np.int32), input_pos=np.array([position], np.int32), **caches
        )
        caches = {name: out[name] for name in caches}
        logits.append(out["logits"][0, 0])
    return np.stack(logits)


def cache_shapes(meta):
    """`{cache name: shape}`: each layer's own key/value heads when the metadata lists them."""
    heads = meta.get("kv_heads_per_layer") or [meta["num_kv_heads"]] * meta["num_layers"]
    names = cache_names(meta["num_layers"])
    return {
        name: (1, meta["cache_length"], heads[i // 2], meta["head_dim"])
        for i, name in enumerate(names)
    }


def _probe_ids(meta):
    special = set(meta["tokenizer"]["special_tokens"].values())
    ordinary = [i for i in range(meta["vocabulary_size"]) if i not in special]
    rng = np.random.default_rng(0)
    return [int(i) for i in rng.choice(ordinary, size=VERIFY_STEPS, replace=False)]


def check_logits(causal_lm, content, meta, tolerance):
    token_ids = _probe_ids(meta)
    reference = keras_step_logits(causal_lm, token_ids, meta["cache_length"])
    exported = decode_steps(content, meta, token_ids)
    scale = max(float(np.abs(reference).max()), 1e-6)
    error = float(np.abs(exported - reference).max())
    agree = float(np.mean(exported.argmax(-1) == reference.argmax(-1)))
    passed = error / scale <= tolerance
    return {
        "passed": passed,
        "detail": (
            f"decode logits over {len(token_ids)} steps: max |diff| {error:.3g} = "
            f"{error / scale:.3g} of max |logit| {scale:.3g} (tolerance {tolerance}); "
            f"argmax agreement {agree:.2f}"
        ),
        "max_abs_error": error,
        "relative_error": error / scale,
        "argmax_agreement": agree,
    }


def run_generator_checks(causal_lm, content, meta, tolerance=None):
    """Runs the checks; raises `ExportVerificationError` if one fails."""
    target = meta["target"]
    tolerance = DEFAULT_TOLERANCE[target] if tolerance is None else tolerance
    weight_target = "dynamic_int8" if target in ("int8_weights", "mixed_int8") else target
    checks = {
        "builtin_ops": verify.check_ops(content),
        "weights_present": verify.check_weights(content, weight_target, causal_lm.count_params()),
        "logits_match": check_logits(causal_lm, content, meta, tolerance),
    }
    failed = [name for name, check in checks.items() if check["passed"] is False]
    if failed:
        raise verify.ExportVerificationError(failed, checks)
    return checks
