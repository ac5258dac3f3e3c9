"""Which weights of which layers are pruned, and along which axis."""

import keras

from tfcompress.sparsity.prunable_layer import PrunableLayer

SUPPORTED = (
    "Supported: Dense, EinsumDense, Conv1D/2D/3D (and transposes), "
    "DepthwiseConv, SeparableConv, Embedding (prune_embeddings=True), or a "
    "layer implementing tfcompress.sparsity.PrunableLayer."
)

_KERNEL_LAYERS = (
    keras.layers.Dense,
    keras.layers.EinsumDense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D,
    keras.layers.DepthwiseConv2D,
)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def _weight_names(layer, prune_embeddings):
    """Attribute names of the pruned variables, or None if unsupported."""
    if isinstance(layer, _SEPARABLE):
        # Like TFMOT: the pointwise kernel carries almost all the weights.
        return ["pointwise_kernel"]
    if isinstance(layer, _KERNEL_LAYERS):
        return ["kernel"]
    if is_embedding(layer):
        return [_embedding_attribute(layer)] if prune_embeddings else None
    return None


def _embedding_attribute(layer):
    # keras-hub's PositionEmbedding is matched by name so that keras-hub need
    # not be imported; its ReversibleEmbedding is a keras.layers.Embedding.
    return "embeddings" if isinstance(layer, keras.layers.Embedding) else ("position_embeddings")


def is_embedding(layer):
    return isinstance(layer, keras.layers.Embedding) or (
        type(layer).__name__ == "PositionEmbedding"
    )


def is_prunable(layer, prune_embeddings=False):
    """Whether `prunable_weights` supports `layer` (built or not)."""
    return isinstance(layer, PrunableLayer) or (_weight_names(layer, prune_embeddings) is not None)


def prunable_weights(layer, prune_embeddings=False):
    """The variables of a built `layer` that pruning applies to.

    Supported: Dense, EinsumDense (inside MultiHeadAttention and keras-hub
    blocks too), Conv1D/2D/3D and their transposes, DepthwiseConv,
    SeparableConv (pointwise kernel), Embedding and keras-hub's
    ReversibleEmbedding and PositionEmbedding when `prune_embeddings` is set,
    and any `PrunableLayer`. Biases and normalization weights are never
    pruned.

    Args:
        layer: a built Keras layer.
        prune_embeddings: whether embedding tables are pruned.

    Returns:
        A list of variables, or None when `layer` is not supported.
    """
    if isinstance(layer, PrunableLayer):
        return list(layer.get_prunable_weights())
    names = _weight_names(layer, prune_embeddings)
    if names is None:
        return None
    return [getattr(layer, name) for name in names]


def _einsum_reduction_axis(layer):
    equation = layer.equation.replace(" ", "")
    inputs, output = equation.split("->")
    _, kernel = inputs.split(",")
    reduced = [i for i, letter in enumerate(kernel) if letter not in output]
    return reduced[-1] if reduced else 0


def reduction_axis(layer, weight):
    """The input (reduction) axis of a kernel, for N:M groups.

    Dense (in, out) -> 0; Conv (..., in, out) -> -2 as a positive index;
    EinsumDense -> the last kernel axis summed over by its equation (for a
    (heads, head_dim, hidden) output projection, head_dim); embeddings -> the
    last axis.
    """
    rank = len(weight.shape)
    if isinstance(layer, keras.layers.EinsumDense):
        return _einsum_reduction_axis(layer)
    if is_embedding(layer):
        return rank - 1
    if isinstance(layer, keras.layers.Dense) or rank < 2:
        return 0
    if isinstance(
        layer,
        (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose),
    ):
        return rank - 1  # transposed kernels are (..., out, in)
    return rank - 2
