"""Which weights of which layers are pruned, and along which axis."""

import keras

from tfcompress.sparsity.prunable_layer import PrunableLayer

_EMBEDDINGS = (keras.layers.Embedding,)


def _kernel_attributes(layer):
    if isinstance(layer, keras.layers.SeparableConv1D) or isinstance(
        layer, keras.layers.SeparableConv2D
    ):
        # Like TFMOT: the pointwise kernel carries almost all the weights.
        return ["pointwise_kernel"]
    if isinstance(
        layer,
        (
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
        ),
    ):
        return ["kernel"]
    return None


def is_embedding(layer):
    return isinstance(layer, _EMBEDDINGS)


def prunable_weights(layer, prune_embeddings=False):
    """The variables of `layer` that pruning applies to, or None if unsupported.

    Supported: Dense, EinsumDense (inside MultiHeadAttention and keras-hub
    blocks too), Conv1D/2D/3D and their transposes, DepthwiseConv, SeparableConv
    (pointwise kernel), Embedding / keras-hub ReversibleEmbedding when
    `prune_embeddings` is set, and any `PrunableLayer`. Biases and
    normalization weights are never pruned.
    """
    if isinstance(layer, PrunableLayer):
        return list(layer.get_prunable_weights())
    if is_embedding(layer):
        return [layer.embeddings] if prune_embeddings else None
    names = _kernel_attributes(layer)
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
