"""keras-hub's cached multi-head attention with fewer heads than its model's cache."""

import keras
import keras_hub

from tfcompress.sparsity._narrow_cache import on_leading_heads


@keras.saving.register_keras_serializable(package="tfcompress")
class PrunedCachedMultiHeadAttention(keras_hub.layers.CachedMultiHeadAttention):
    """A `CachedMultiHeadAttention` that keeps fewer heads than the cache it is given.

    `prune_structured` puts it in place of a GPT-2 block's attention when it
    removes heads: `num_heads` and `key_dim` are explicit in the config as
    in Keras's `MultiHeadAttention`, and under `generate` (whose cache the
    backbone sizes for its configured `num_heads`) it uses the first
    `num_heads` heads of each layer's cache.

    Args:
        Those of `keras.layers.MultiHeadAttention`.

    Example:

    ```python
    pruned = tfcompress.sparsity.prune_structured(
        gpt2_causal_lm, heads=0.5, criterion="magnitude")
    pruned.generate("The", max_length=16)
    ```
    """

    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        cache=None,
        cache_update_index=None,
        return_attention_scores=False,
        training=None,
    ):
        def run(own_cache):
            return super(PrunedCachedMultiHeadAttention, self).call(
                query,
                value,
                key=key,
                attention_mask=attention_mask,
                cache=own_cache,
                cache_update_index=cache_update_index,
                return_attention_scores=return_attention_scores,
                training=training,
            )

        return on_leading_heads(run, cache, self.num_heads)
