"""A toy generator `.tflite` file in the `to_tflite_generator` layout, with a numpy twin.

One attention head over a per-layer K/V cache, so the logits depend on every
earlier token and a cache mistake (wrong slot, stale slots, lost turn) shows.
Built with plain TensorFlow, independent of `tfcompress.export`.
"""

import json
import tempfile

import numpy as np

from tests.models import tiny_llama

NUM_LAYERS = 2
HEAD_DIM = 8
SPECIAL = tiny_llama.SPECIAL
CHAT_TEMPLATE = tiny_llama.CHAT_TEMPLATE
vocabulary = tiny_llama.vocabulary_ids


def weights(seed=0):
    rng = np.random.default_rng(seed)
    vocab = len(vocabulary())
    return {
        "embedding": rng.normal(size=(vocab, HEAD_DIM)).astype(np.float32),
        "layers": [
            {
                k: (rng.normal(size=(HEAD_DIM, HEAD_DIM)) / np.sqrt(HEAD_DIM)).astype(np.float32)
                for k in "qkv"
            }
            for _ in range(NUM_LAYERS)
        ],
    }


def numpy_logits(w, token_ids):
    """Logits `[len(token_ids), vocab]` of the toy model run over the whole sequence."""
    x = w["embedding"][np.asarray(token_ids)]
    n = len(token_ids)
    causal = np.tril(np.ones((n, n), dtype=bool))
    for layer in w["layers"]:
        q, k, v = x @ layer["q"], x @ layer["k"], x @ layer["v"]
        scores = np.where(causal, q @ k.T, -1e9)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        x = x + (scores / scores.sum(-1, keepdims=True)) @ v
    return x @ w["embedding"].T


def metadata(cache_length, prefill_lengths, sampling=None):
    return {
        "format_version": 1,
        "architecture": "toy",
        "num_layers": NUM_LAYERS,
        "num_kv_heads": 1,
        "head_dim": HEAD_DIM,
        "cache_length": cache_length,
        "prefill_lengths": list(prefill_lengths),
        "vocabulary_size": len(vocabulary()),
        "target": "float32",
        "tokenizer": {
            "type": "byte_level_bpe",
            "vocabulary": vocabulary(),
            "merges": tiny_llama.MERGES,
            "special_tokens": {t: vocabulary()[t] for t in SPECIAL},
            "pre_tokenizer": "gpt2",
        },
        "start_token_id": 1,
        "end_token_ids": [2],
        "pad_token_id": 0,
        "add_start_token": False,
        "chat_template": CHAT_TEMPLATE,
        "sampling": sampling or {"temperature": 0.0, "top_k": 1, "top_p": 1.0},
    }


def _signature(tf, xla, w, length, cache_length, logits):
    embedding = tf.constant(w["embedding"])
    cache_spec = [1, cache_length, 1, HEAD_DIM]
    specs = [
        tf.TensorSpec([1, length], tf.int32, name="tokens"),
        tf.TensorSpec([length], tf.int32, name="input_pos"),
    ]
    for i in range(NUM_LAYERS):
        specs += [
            tf.TensorSpec(cache_spec, tf.float32, name=f"kv_cache_k_{i}"),
            tf.TensorSpec(cache_spec, tf.float32, name=f"kv_cache_v_{i}"),
        ]

    @tf.function(input_signature=specs)
    def run(tokens, input_pos, *caches):
        x = tf.gather(embedding, tokens[0])
        slots = tf.range(cache_length)
        visible = slots[None, :] <= input_pos[:, None]
        outputs = {}
        for i, layer in enumerate(w["layers"]):
            k_cache, v_cache = caches[2 * i], caches[2 * i + 1]
            start = tf.stack([0, input_pos[0], 0, 0])
            k = tf.reshape(x @ tf.constant(layer["k"]), [1, length, 1, HEAD_DIM])
            v = tf.reshape(x @ tf.constant(layer["v"]), [1, length, 1, HEAD_DIM])
            k_cache = xla.dynamic_update_slice(k_cache, k, start)
            v_cache = xla.dynamic_update_slice(v_cache, v, start)
            q = x @ tf.constant(layer["q"])
            scores = tf.where(visible, q @ tf.transpose(k_cache[0, :, 0]), -1e9)
            x = x + tf.nn.softmax(scores) @ v_cache[0, :, 0]
            outputs[f"kv_cache_k_{i}"], outputs[f"kv_cache_v_{i}"] = k_cache, v_cache
        if logits:
            outputs["logits"] = tf.reshape(x[-1:] @ tf.transpose(embedding), [1, 1, -1])
        return outputs

    return run


def write(path, cache_length=32, prefill_lengths=(4, 8), seed=0, sampling=None):
    """Writes the toy generator to `path`; returns its numpy weights."""
    import tensorflow as tf
    from tensorflow.compiler.tf2xla.python import xla

    from tfcompress.export import flatbuffer

    w = weights(seed)
    module = tf.Module()
    signatures = {"decode": _signature(tf, xla, w, 1, cache_length, True)}
    for length in prefill_lengths:
        signatures[f"prefill_{length}"] = _signature(tf, xla, w, length, cache_length, False)
    with tempfile.TemporaryDirectory() as directory:
        tf.saved_model.save(module, directory, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            directory, signature_keys=list(signatures)
        )
        content = converter.convert()
    schema = flatbuffer.schema
    _, model = flatbuffer.editable_model(content)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(
        json.dumps(metadata(cache_length, prefill_lengths, sampling)).encode(), np.uint8
    )
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = "tfcompress_generator"
    entry.buffer = len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    with open(path, "wb") as f:
        f.write(flatbuffer.pack(model))
    return w
