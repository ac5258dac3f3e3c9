"""Attention with fewer heads than its model's generation cache has room for.

keras-hub's `CausalLM.generate` sizes one stacked cache
`[batch, layers, 2, length, heads, head_dim]` from the backbone's config,
the same for every block, while a pruned block keeps fewer heads (and
blocks may differ). Such a block reads and writes the first heads of its
cache slice; the rest stay zero and are never read.
"""

from keras import ops


def on_leading_heads(run, cache, heads):
    """`run(cache)` on the first `heads` heads of `cache`; its cache written back.

    Args:
        run: `run(cache)` calls the attention; with a cache it returns a
            tuple whose last item is the updated cache.
        cache: None, or `[batch, 2, length, cache_heads, head_dim]`.
        heads: the layer's own key/value head count.

    Returns:
        What `run` returns, its cache as wide as `cache`.

    Raises:
        ValueError: when `cache` has fewer heads than the layer.
    """
    if cache is None or cache.shape[-2] == heads:
        return run(cache)
    if cache.shape[-2] < heads:
        raise ValueError(
            f"The cache has {cache.shape[-2]} key/value heads, fewer than the layer's "
            f"{heads}. Build the cache from the model's config (`generate` does)."
        )
    *outputs, own = run(cache[:, :, :, :heads, :])
    return (*outputs, ops.slice_update(cache, [0, 0, 0, 0, 0], own))
