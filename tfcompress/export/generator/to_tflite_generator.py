"""`to_tflite_generator`: a keras-hub causal LM as one LiteRT file with a KV cache."""

import contextlib
import io
import pathlib
import tempfile
import warnings

import tensorflow as tf

from tfcompress.export import flatbuffer
from tfcompress.export.generator import (
    decoder_weights,
    graph as graph_lib,
    metadata as metadata_lib,
    outlier_channels,
    tokenizer_metadata,
    weight_rewrites,
)
from tfcompress.export.generator.generator_checks import run_generator_checks
from tfcompress.export.generator.generator_export import GeneratorExport

GENERATOR_TARGETS = ("float32", "float16", "dynamic_int8", "int8_weights", "mixed_int8")
INT8_TARGETS = ("dynamic_int8", "int8_weights", "mixed_int8")


def _validate(causal_lm, target, cache_length, prefill_lengths, path, verify):
    import keras_hub

    if not isinstance(causal_lm, keras_hub.models.CausalLM):
        raise TypeError(
            "`causal_lm` must be a keras-hub `CausalLM` (e.g. GPT2CausalLM, "
            f"Llama3CausalLM). Received: {type(causal_lm).__name__}. To export your "
            "own decoder, see the 'Making your own causal LM exportable' section of "
            "docs/generator_export.md."
        )
    if not hasattr(causal_lm, "call_with_cache"):
        raise ValueError(
            f"`causal_lm` ({type(causal_lm).__name__}) has no `call_with_cache`: it has "
            "no key/value cache to export. Use a keras-hub causal LM with cached attention."
        )
    if decoder_weights.architecture_of(causal_lm) is None:
        raise ValueError(
            f"`causal_lm` is a {type(causal_lm).__name__}; to_tflite_generator reads "
            "GPT2CausalLM and Llama-family (LlamaCausalLM, Llama3CausalLM) models. "
            "See docs/generator_export.md for how to make another decoder exportable."
        )
    if target not in GENERATOR_TARGETS:
        raise ValueError(
            f"`target` must be one of {GENERATOR_TARGETS}. Received: target={target!r}"
        )
    if not isinstance(cache_length, int) or isinstance(cache_length, bool) or cache_length < 2:
        raise ValueError(
            f"`cache_length` must be an int >= 2 (the context, prompt plus answer, in "
            f"tokens). Received: cache_length={cache_length!r}"
        )
    max_positions = getattr(causal_lm.backbone, "max_sequence_length", None)
    if max_positions is not None and cache_length > max_positions:
        raise ValueError(
            f"`cache_length` must be at most the model's max_sequence_length "
            f"({max_positions}), the positions it has embeddings for. Received: "
            f"cache_length={cache_length}"
        )
    if isinstance(prefill_lengths, int) or not prefill_lengths:
        raise ValueError(
            "`prefill_lengths` must be a non-empty tuple of prompt lengths, e.g. (32, 128). "
            f"Received: prefill_lengths={prefill_lengths!r}"
        )
    for length in prefill_lengths:
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or not 1 <= length < cache_length
        ):
            raise ValueError(
                f"Every prefill length must be an int in [1, cache_length - 1] = [1, "
                f"{cache_length - 1}] (a prompt longer than the cache cannot be "
                f"prefilled). Received: prefill_lengths={tuple(prefill_lengths)!r}"
            )
    if len(set(prefill_lengths)) != len(prefill_lengths):
        raise ValueError(f"`prefill_lengths` has duplicates. Received: {tuple(prefill_lengths)!r}")
    if path is not None and not str(path).endswith(".tflite"):
        raise ValueError(f"`path` must end with .tflite. Received: path={str(path)!r}")
    if not isinstance(verify, bool):
        raise TypeError(f"`verify` must be True or False. Received: verify={verify!r}")


def _converter(directory, signature_keys, target):
    # Keras variables would stay uninitialized resources here (NaN logits);
    # GeneratorGraph holds plain tf.Variables, which the converter freezes.
    converter = tf.lite.TFLiteConverter.from_saved_model(directory, signature_keys=signature_keys)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if target != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if target == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter


def _convert(graph, prefill_lengths, target, progress):
    signatures = {"decode": graph.signature(1, logits=True)}
    for length in sorted(prefill_lengths):
        signatures[f"prefill_{length}"] = graph.signature(length, logits=False)
    with tempfile.TemporaryDirectory() as directory:
        progress(f"tracing {len(signatures)} signatures")
        tf.saved_model.save(graph, directory, signatures=signatures)
        progress(f"converting to {target}")
        converter = _converter(directory, list(signatures), target)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()


def to_tflite_generator(
    causal_lm,
    target="mixed_int8",
    cache_length=1024,
    prefill_lengths=(32, 128),
    path=None,
    chat_template=None,
    sampling=None,
    verify=True,
    tolerance=None,
    verbose=False,
):
    """Exports a keras-hub causal LM as one `.tflite` generator with a KV cache.

    The file has the signature layout ai-edge-torch writes and LiteRT-LM reads:
    `decode` (`tokens` int32 [1, 1], `input_pos` int32 [1] and per-layer
    `kv_cache_k_{i}` / `kv_cache_v_{i}` float32 [1, S, kv_heads, head_dim] in, with
    each layer's own kv_heads (a pruned model's blocks may keep fewer);
    `logits` [1, 1, V] and the updated caches out) and one `prefill_{T}` per
    prompt length (`tokens` [1, T], `input_pos` [T], caches in and out). Each
    layer's K/V is written in place with DYNAMIC_UPDATE_SLICE; a query at
    position p reads cache slots <= p only. Weights are stored once and shared
    by every signature, the tied embedding / LM head included. Builtin ops only.

    The tokenizer, special tokens, chat template and sampling defaults are
    stored as the `tfcompress_generator` metadata entry
    (`tfcompress.export.read_generator_metadata`).

    Protocol: prefill the prompt minus its last token (padded to T with the
    pad id, positions continuing from the current one), then `decode` the last
    prompt token for the first logits; keep `input_pos + T <= cache_length`.

    Args:
        causal_lm: a keras-hub `GPT2CausalLM`, `LlamaCausalLM` or
            `Llama3CausalLM` (e.g. from `tfcompress.models.from_gguf`).
        target: "mixed_int8" (the default: dynamic_int8's hybrid int8
            kernels, with each projection's few outlier input channels,
            found on 128 calibration tokens of `pydoc_data.topics`, through a
            small float matmul; on SmolLM2-135M held-out perplexity -0.4% of
            float32's against dynamic_int8's +7.5% and int8_weights' +1.5%,
            decode logits 0.076 of the largest logit away from Keras's),
            "float32", "float16" (float16 weights), "int8_weights" (int8
            weights dequantized once at load, float activations: accurate but
            read as float32 at run time, so slow) or "dynamic_int8" (int8
            weights, every activation quantized on the fly by XNNPack).
        cache_length: S, the static context length in tokens.
        prefill_lengths: the prompt chunk lengths T, each in [1, S - 1].
        path: where to write the file, or None to keep the bytes only.
        chat_template: a Jinja chat template for the metadata; defaults to the
            tokenizer's `chat_template` attribute when it has one.
        sampling: {"temperature", "top_k", "top_p"} defaults for `chat`.
        verify: check builtin ops, weights and decode logits against Keras
            `call_with_cache` on a few steps; raise if a check fails.
        tolerance: the largest allowed max |logit difference| / max |logit|;
            defaults per target (1e-4 float32, 2e-2 float16, 0.15 int8 ones).
        verbose: print progress.

    Returns:
        A `GeneratorExport` (`content`, `path`, `metadata`, `checks`).

    Raises:
        TypeError / ValueError: bad arguments (before any work).
        ExportVerificationError: a verification check failed.

    Example:
        ```python
        causal_lm = tfcompress.models.from_gguf(tfcompress.models.smollm2_path())
        tfcompress.export.to_tflite_generator(
            causal_lm, target="mixed_int8", cache_length=1024,
            prefill_lengths=(32, 128), path="smollm2.tflite")
        ```
    """
    _validate(causal_lm, target, cache_length, prefill_lengths, path, verify)
    prefill_lengths = tuple(sorted(int(t) for t in prefill_lengths))
    meta_tokenizer = tokenizer_metadata.tokenizer_metadata(causal_lm, chat_template, sampling)

    def progress(message):
        if verbose:
            print(f"to_tflite_generator: {message}", flush=True)

    progress("reading weights")
    weights = decoder_weights.read_decoder_weights(causal_lm, cache_length)
    graph = graph_lib.GeneratorGraph(weights, cache_length, int8_embedding=target in INT8_TARGETS)
    if target == "mixed_int8":
        progress("finding outlier input channels")
        tokenizer = causal_lm.preprocessor.tokenizer
        ids = outlier_channels.calibration_ids(
            tokenizer,
            getattr(tokenizer, "start_token_id", None),
            min(cache_length, outlier_channels.CALIBRATION_TOKENS),
        )
        inputs = graph.record_linear_inputs(ids)
        graph.split_outlier_channels(outlier_channels.select_outlier_channels(inputs))
    model = flatbuffer.read_model(_convert(graph, prefill_lengths, target, progress))
    progress("rewriting weights")
    if target in INT8_TARGETS:
        weight_rewrites.restore_float_lookups(model, graph.lookup_tables())
    weight_rewrites.store_embedding_once(model)
    if target == "int8_weights":
        weight_rewrites.dequantize_weights_once(model)
    if target == "mixed_int8":
        weight_rewrites.dequantize_weights_once(model, only=graph.split_kernels(), float16=True)
    meta = dict(
        format_version=metadata_lib.FORMAT_VERSION,
        architecture=weights.architecture,
        num_layers=weights.num_layers,
        num_kv_heads=weights.num_kv_heads,
        kv_heads_per_layer=weights.kv_heads_per_layer(),
        head_dim=weights.head_dim,
        cache_length=cache_length,
        prefill_lengths=list(prefill_lengths),
        vocabulary_size=weights.vocabulary_size,
        target=target,
        **meta_tokenizer,
    )
    metadata_lib.add_generator_metadata(model, meta)
    # Packed once, after every rewrite: each pack of SmolLM2 copies its 145+ MB.
    content = flatbuffer.pack(model)
    checks = {}
    if verify:
        progress("verifying decode logits against call_with_cache")
        checks = run_generator_checks(causal_lm, content, meta, tolerance)
    if path is not None:
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(path).write_bytes(content)
        progress(f"wrote {path} ({len(content) / 1e6:.1f} MB)")
    return GeneratorExport(
        content=content, path=None if path is None else str(path), metadata=meta, checks=checks
    )
