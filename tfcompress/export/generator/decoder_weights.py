"""`DecoderWeights`: a keras-hub causal LM's weights as numpy, in one layout per block.

The exported graph is written in plain TensorFlow over these arrays rather than
by calling the Keras layers: Keras variables survive `from_saved_model` as
uninitialized resources (NaN logits), keras-hub's cached attention stacks and
re-slices a whole-model cache every step, and a static, per-layer cache needs
its own attention anyway.
"""

import dataclasses

import keras
import numpy as np

from tfcompress.core._keras_internals import (
    attention_projections,
    block_sublayers,
    rotary_cos_sin,
)


@dataclasses.dataclass
class DecoderWeights:
    """The weights and shapes an exported generator needs.

    Attributes:
        architecture: "gpt2" or "llama3" (any keras-hub Llama-family decoder).
        num_layers, num_query_heads, num_kv_heads, head_dim, hidden_dim,
        vocabulary_size: the model's dimensions; the head counts are the
            largest over the blocks (pruned blocks may keep fewer, see
            `kv_heads_per_layer`).
        embedding: [V, hidden] token embedding.
        head: [V, hidden] LM-head rows, or None when tied to `embedding`.
        final_norm: {"gamma", "beta" (None for RMSNorm), "epsilon"}.
        layers: one dict per block of 2D kernels [in, out], biases (None when
            absent), norms, the block's activation and its own
            `num_query_heads` and `num_kv_heads` (read from its kernels).
        rope_cos, rope_sin: [max positions, head_dim] rotary tables (Llama) or None.
        positions: [max positions, hidden] learned position embedding (GPT-2) or None.
        max_positions: the longest cache the position tables cover.
    """

    architecture: str
    num_layers: int
    num_query_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_dim: int
    vocabulary_size: int
    embedding: np.ndarray
    head: object
    final_norm: dict
    layers: list
    rope_cos: object = None
    rope_sin: object = None
    positions: object = None
    max_positions: int = 0

    def kv_heads_per_layer(self):
        """Key/value heads of each block, in order: its cache's third dimension."""
        return [layer["num_kv_heads"] for layer in self.layers]


def _np(value):
    return None if value is None else np.asarray(keras.ops.convert_to_numpy(value), np.float32)


def _dense(layer):
    """(kernel [in, out], bias [out] or None) of a Dense or an input-side EinsumDense."""
    kernel = _np(layer.kernel)
    bias = _np(getattr(layer, "bias", None))
    return kernel.reshape(kernel.shape[0], -1), None if bias is None else bias.reshape(-1)


def _output_dense(layer):
    """The attention output projection: kernel [heads, head_dim, out] -> [in, out]."""
    kernel = _np(layer.kernel)
    bias = _np(getattr(layer, "bias", None))
    return kernel.reshape(-1, kernel.shape[-1]), None if bias is None else bias.reshape(-1)


def _norm(layer):
    if hasattr(layer, "gamma"):
        beta = getattr(layer, "beta", None)
        return {
            "gamma": _np(layer.gamma),
            "beta": _np(beta),
            "epsilon": float(layer.epsilon),
            "rms": False,
        }
    return {"gamma": _np(layer.scale), "beta": None, "epsilon": float(layer.epsilon), "rms": True}


def _attention(attention):
    projections = attention_projections(attention)
    q, q_bias = _dense(projections.query)
    k, k_bias = _dense(projections.key)
    v, v_bias = _dense(projections.value)
    o, o_bias = _output_dense(projections.output)
    # From the kernels, not the config: structured pruning leaves blocks with
    # fewer heads than the backbone's config (and blocks may differ).
    query_shape, key_shape = projections.query.kernel.shape, projections.key.kernel.shape
    return dict(
        q=q,
        q_bias=q_bias,
        k=k,
        k_bias=k_bias,
        v=v,
        v_bias=v_bias,
        o=o,
        o_bias=o_bias,
        num_query_heads=int(query_shape[-2]),
        num_kv_heads=int(key_shape[-2]),
        head_dim=int(query_shape[-1]),
    )


def _block(block, activation):
    sublayers = block_sublayers(block)
    up, up_bias = _dense(sublayers.up)
    gate, gate_bias = (None, None) if sublayers.gate is None else _dense(sublayers.gate)
    down, down_bias = _dense(sublayers.down)
    return dict(
        _attention(sublayers.attention),
        attention_norm=_norm(sublayers.attention_norm),
        ffn_norm=_norm(sublayers.ffn_norm),
        up=up,
        up_bias=up_bias,
        gate=gate,
        gate_bias=gate_bias,
        down=down,
        down_bias=down_bias,
        activation=activation,
    )


def _gpt2(causal_lm, max_positions):
    backbone = causal_lm.backbone
    layers = []
    for block in backbone.transformer_layers:
        if not block.normalize_first:
            raise ValueError(
                "`causal_lm` has post-norm decoder blocks; GPT-2 export expects "
                "normalize_first=True."
            )
        layers.append(_block(block, block_sublayers(block).up.activation))
    positions = _np(backbone.position_embedding.position_embeddings)
    return DecoderWeights(
        architecture="gpt2",
        num_layers=backbone.num_layers,
        num_query_heads=max(layer["num_query_heads"] for layer in layers),
        num_kv_heads=max(layer["num_kv_heads"] for layer in layers),
        head_dim=layers[0]["head_dim"],
        hidden_dim=backbone.hidden_dim,
        vocabulary_size=backbone.vocabulary_size,
        embedding=_np(backbone.token_embedding.embeddings),
        head=None,
        final_norm=_norm(backbone.layer_norm),
        layers=layers,
        positions=positions,
        max_positions=positions.shape[0],
    )


def _llama(causal_lm, max_positions):
    backbone = causal_lm.backbone
    layers = [_block(block, block.activation) for block in backbone.transformer_layers]
    attention = block_sublayers(backbone.transformer_layers[0]).attention
    head_dim = layers[0]["head_dim"]
    # The layer's own cos/sin at every position, so any rope scaling it applies
    # (Llama 3.1 frequency bands, position scaling) carries over unchanged.
    probe = keras.ops.zeros((1, max_positions, head_dim))
    cos, sin = rotary_cos_sin(attention.rotary_embedding_layer, probe, 0)
    embedding = backbone.token_embedding
    tied = getattr(embedding, "tie_weights", True)
    return DecoderWeights(
        architecture="llama3",
        num_layers=backbone.num_layers,
        num_query_heads=max(layer["num_query_heads"] for layer in layers),
        num_kv_heads=max(layer["num_kv_heads"] for layer in layers),
        head_dim=head_dim,
        hidden_dim=backbone.hidden_dim,
        vocabulary_size=backbone.vocabulary_size,
        embedding=_np(embedding.embeddings),
        head=None if tied else _np(embedding.reverse_embeddings).T,
        final_norm=_norm(backbone.layer_norm),
        layers=layers,
        rope_cos=_np(cos).reshape(max_positions, head_dim),
        rope_sin=_np(sin).reshape(max_positions, head_dim),
        max_positions=max_positions,
    )


def architecture_of(causal_lm):
    """ "gpt2", "llama3" or None for a model the exporter cannot read."""
    import keras_hub

    if isinstance(causal_lm, keras_hub.models.GPT2CausalLM):
        return "gpt2"
    if isinstance(causal_lm, keras_hub.models.LlamaCausalLM) or isinstance(
        causal_lm, keras_hub.models.Llama3CausalLM
    ):
        return "llama3"
    return None


def read_decoder_weights(causal_lm, max_positions):
    """The `DecoderWeights` of a keras-hub GPT-2 or Llama-family causal LM."""
    reader = {"gpt2": _gpt2, "llama3": _llama}[architecture_of(causal_lm)]
    return reader(causal_lm, max_positions)
