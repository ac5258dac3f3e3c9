"""keras-hub's Llama grouped-query attention with an explicit head width."""

import math

import keras

from tfcompress.core._keras_internals import attention_projections, llama_attention_classes
from tfcompress.sparsity._narrow_cache import on_leading_heads

_LlamaAttention, _LlamaRotaryEmbedding = llama_attention_classes()

_ROPE = (
    "rope_max_wavelength",
    "rope_position_scaling_factor",
    "rope_frequency_adjustment_factor",
    "rope_low_freq_factor",
    "rope_high_freq_factor",
    "rope_pretraining_sequence_length",
)


def _check_heads(num_query_heads, num_key_value_heads, head_dim):
    for name, value in (
        ("num_query_heads", num_query_heads),
        ("num_key_value_heads", num_key_value_heads),
        ("head_dim", head_dim),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if num_query_heads % num_key_value_heads:
        raise ValueError(
            f"`num_query_heads` must be a multiple of `num_key_value_heads` (each "
            f"key/value head serves a group of query heads). Received: "
            f"num_query_heads={num_query_heads}, num_key_value_heads={num_key_value_heads}."
        )


@keras.saving.register_keras_serializable(package="tfcompress")
class PrunedLlamaAttention(_LlamaAttention):
    """A Llama `LlamaAttention` whose head width does not come from the model width.

    keras-hub's `LlamaAttention` sizes its heads `hidden_dim // num_query_heads`,
    so a block with heads removed cannot be described by it. This layer runs
    the same attention (rotary embedding, grouped key/value heads) with
    `head_dim` given, and under `generate` (whose cache the backbone sizes
    for its configured `num_key_value_heads`) it uses the first
    `num_key_value_heads` heads of each layer's cache. `prune_structured`
    puts it in Llama blocks when it removes key/value groups.

    Args:
        num_query_heads: query heads; a multiple of `num_key_value_heads`.
        num_key_value_heads: key/value heads.
        head_dim: width of every head.
        rope_max_wavelength, rope_position_scaling_factor,
        rope_frequency_adjustment_factor, rope_low_freq_factor,
        rope_high_freq_factor, rope_pretraining_sequence_length,
        kernel_initializer, dropout: as in keras-hub's `LlamaAttention`.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: for head counts that are not positive ints, or query heads
            that are not a multiple of key/value heads.

    Example:

    ```python
    pruned = tfcompress.sparsity.prune_structured(
        llama3_causal_lm, heads=0.5, criterion="magnitude")
    attention = tfcompress.core.find_layer(
        pruned, "llama3_backbone/transformer_layer_0/self_attention").layer
    isinstance(attention, tfcompress.sparsity.PrunedLlamaAttention)  # True
    ```
    """

    def __init__(self, num_query_heads, num_key_value_heads, head_dim, **kwargs):
        _check_heads(num_query_heads, num_key_value_heads, head_dim)
        super().__init__(num_query_heads, num_key_value_heads, **kwargs)
        self.head_dim = head_dim

    @classmethod
    def from_attention(cls, attention, num_key_value_heads):
        """An unbuilt layer like `attention` (a `LlamaAttention`) with fewer key/value heads.

        The query heads shrink with them (whole groups go) and the head width
        is kept.
        """
        groups = attention.num_query_heads // attention.num_key_value_heads
        return cls(
            num_query_heads=groups * num_key_value_heads,
            num_key_value_heads=num_key_value_heads,
            head_dim=int(attention_projections(attention).query.kernel.shape[-1]),
            kernel_initializer=keras.initializers.serialize(attention.kernel_initializer),
            dropout=attention.dropout,
            dtype=attention.dtype_policy,
            name=attention.name,
            **{name: getattr(attention, name) for name in _ROPE},
        )

    def build(self, inputs_shape):
        hidden_dim = inputs_shape[-1]
        heads, groups, width = self.num_query_heads, self.num_key_value_heads, self.head_dim
        self._inv_norm_factor = 1.0 / math.sqrt(width)

        def projection(equation, output_shape, name, shape):
            layer = keras.layers.EinsumDense(
                equation=equation,
                output_shape=output_shape,
                kernel_initializer=keras.initializers.get(
                    keras.initializers.serialize(self.kernel_initializer)
                ),
                dtype=self.dtype_policy,
                name=name,
            )
            layer.build(shape)
            return layer

        # Created in keras-hub's order, so the weights line up with its layer's.
        self._query_dense = projection("bqm,muh->bquh", (None, heads, width), "query", inputs_shape)
        self._key_dense = projection("bkm,mvh->bkvh", (None, groups, width), "key", inputs_shape)
        self._value_dense = projection(
            "bkm,mvh->bkvh", (None, groups, width), "value", inputs_shape
        )
        self._softmax = keras.layers.Softmax(axis=-1, dtype="float32", name="attention_softmax")
        self._dropout_layer = keras.layers.Dropout(rate=self.dropout, dtype=self.dtype_policy)
        self._output_dense = projection(
            "bquh,uhm->bqm", (None, hidden_dim), "attention_output", (None, None, heads, width)
        )
        self.rotary_embedding_layer = _LlamaRotaryEmbedding(
            max_wavelength=self.rope_max_wavelength,
            position_scaling_factor=self.rope_position_scaling_factor,
            frequency_adjustment_factor=self.rope_frequency_adjustment_factor,
            low_freq_factor=self.rope_low_freq_factor,
            high_freq_factor=self.rope_high_freq_factor,
            pretraining_sequence_length=self.rope_pretraining_sequence_length,
            dtype=self.dtype_policy,
        )
        self._dot_product_equation = "bquh,bkuh->buqk"
        self._combine_equation = "buqk,bkuh->bquh"
        self.built = True

    def call(
        self,
        hidden_states,
        attention_mask=None,
        cache=None,
        cache_update_index=None,
        training=None,
    ):
        def run(own_cache):
            return super(PrunedLlamaAttention, self).call(
                hidden_states,
                attention_mask=attention_mask,
                cache=own_cache,
                cache_update_index=cache_update_index,
                training=training,
            )

        return on_leading_heads(run, cache, self.num_key_value_heads)

    def get_config(self):
        config = keras.layers.Layer.get_config(self)
        config.update(
            {
                "num_query_heads": self.num_query_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "head_dim": self.head_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "dropout": self.dropout,
                **{name: getattr(self, name) for name in _ROPE},
            }
        )
        return config
