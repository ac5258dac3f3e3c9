"""Export of causal LMs as LiteRT generators with a per-layer KV cache."""
