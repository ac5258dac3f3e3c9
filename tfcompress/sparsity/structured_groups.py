"""Coupled weights that structured pruning removes together, in transformer blocks.

A `Group` is one prunable dimension of a model (the heads of one attention
layer, the channels of one feed-forward network): every weight slice that
belongs to one unit (one head, one channel) is listed in its `members`, so a
criterion scores the unit on all of them, and `rebuild(keep)` puts smaller
layers in the model that hold only the kept units.
"""

import contextlib
import dataclasses

import keras
import numpy as np

from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.replace import replace_layer

# What the keras-hub blocks (TransformerEncoder, TransformerDecoder, the Llama,
# Gemma, ... decoders) call their feed-forward layers.
_FFN_IN = ("_feedforward_intermediate_dense", "_feedforward_gate_dense")
_FFN_OUT = "_feedforward_output_dense"
_HEAD_PRODUCERS = ("_query_dense", "_key_dense", "_value_dense", "_gate_dense")


@dataclasses.dataclass
class Member:
    """The part of one variable that belongs to the units of a group.

    Attributes:
        variable: the Keras variable.
        axis: the axis the units sit along.
        units: int array `(num_units, width)`: the positions along `axis` of
            each unit (contiguous for heads, strided for a conv channel read
            through `Flatten`).
    """

    variable: object
    axis: int
    units: np.ndarray


@dataclasses.dataclass
class Group:
    """One prunable dimension: its kind, where it is, its members and rebuild.

    Attributes:
        kind: "heads", "ffn" or "filters" (the `prune_structured` argument).
        path: layer path of the block or layer that owns it.
        size: number of units.
        members: the `Member`s scored together.
        rebuild: `rebuild(keep)` replaces the layers by smaller ones holding
            the units at the sorted indices `keep`.
        granular: whether counts are rounded to `round_to` (channels are,
            heads are not: their width already tiles).
        commit: for groups that share layers, called once after every
            group's `rebuild` to put the smaller layers in place.
    """

    kind: str
    path: str
    size: int
    members: list
    rebuild: object
    granular: bool = True
    commit: object = None


def contiguous(num_units, width=1):
    """Unit `u` covers positions `[u * width, (u + 1) * width)`."""
    return np.arange(num_units * width).reshape(num_units, width)


def take_units(array, axis, units, keep):
    """The slice of `array` holding the units `keep` along `axis`.

    Positions stay in their original order, which is the smaller layer's
    layout: after `Flatten` a kept channel's rows interleave with the others'.
    """
    return np.take(array, np.sort(units[keep].reshape(-1)), axis=axis)


def sliced_copy(layer, config_changes, build_shape, weights, scope=""):
    """A new layer of `layer`'s class with `config_changes`, built, holding `weights`.

    `scope` is the `/`-joined path of the layer's parent, under which the new
    variables are created so their paths are the old ones
    (`transformer_layer_0/self_attention_layer/query/kernel`).
    """
    config = dict(layer.get_config(), **config_changes)
    new = type(layer).from_config(config)
    with contextlib.ExitStack() as stack:
        for name in filter(None, scope.split("/")):
            stack.enter_context(keras.name_scope(name))
        if isinstance(build_shape, dict):
            new.build(**build_shape)
        else:
            new.build(build_shape)
    new.set_weights(weights)
    return new


def _head_group(model, ref):
    mha = ref.layer
    heads = mha.num_heads
    producers = [
        getattr(mha, name) for name in _HEAD_PRODUCERS if getattr(mha, name, None) is not None
    ]
    members = []
    for dense in producers:
        members.append(Member(dense.kernel, 1, contiguous(heads)))
        if dense.bias is not None:
            members.append(Member(dense.bias, 0, contiguous(heads)))
    members.append(Member(mha._output_dense.kernel, 0, contiguous(heads)))

    def rebuild(keep):
        rank = len(mha._query_dense.equation.split(",")[0])
        shape = lambda dense: (None,) * (rank - 1) + (dense.kernel.shape[0],)  # noqa: E731
        weights = []
        for variable in mha.weights:
            member = next((m for m in members if m.variable is variable), None)
            value = variable.numpy()
            weights.append(
                value if member is None else take_units(value, member.axis, member.units, keep)
            )
        new = sliced_copy(
            mha,
            {"num_heads": len(keep), "key_dim": mha.key_dim, "value_dim": mha.value_dim},
            {
                "query_shape": shape(mha._query_dense),
                "value_shape": shape(mha._value_dense),
                "key_shape": shape(mha._key_dense),
            },
            weights,
            scope=ref.path.rpartition("/")[0],
        )
        replace_layer(model, ref, new)

    return Group(
        "heads", ref.path.rpartition("/")[0] or ref.path, heads, members, rebuild, granular=False
    )


def _ffn_group(model, ref):
    block = ref.layer
    inputs = [getattr(block, name) for name in _FFN_IN if getattr(block, name, None) is not None]
    output = getattr(block, _FFN_OUT)
    width = inputs[0].units
    members = []
    for dense in inputs:
        members.append(Member(dense.kernel, 1, contiguous(width)))
        if dense.bias is not None:
            members.append(Member(dense.bias, 0, contiguous(width)))
    members.append(Member(output.kernel, 0, contiguous(width)))

    def rebuild(keep):
        for dense in inputs:
            weights = [take_units(dense.kernel.numpy(), 1, contiguous(width), keep)]
            if dense.bias is not None:
                weights.append(take_units(dense.bias.numpy(), 0, contiguous(width), keep))
            new = sliced_copy(
                dense, {"units": len(keep)}, (None, dense.kernel.shape[0]), weights, ref.path
            )
            replace_layer(model, dense, new)
        weights = [take_units(output.kernel.numpy(), 0, contiguous(width), keep)]
        weights += [w.numpy() for w in output.weights[1:]]
        new = sliced_copy(output, {}, (None, len(keep)), weights, ref.path)
        replace_layer(model, output, new)
        if hasattr(block, "intermediate_dim"):
            block.intermediate_dim = len(keep)

    return Group("ffn", ref.path, width, members, rebuild)


def _is_ffn_block(layer):
    return all(
        isinstance(getattr(layer, name, None), keras.layers.Dense)
        for name in (_FFN_IN[0], _FFN_OUT)
    )


def transformer_groups(model):
    """The head groups of every `MultiHeadAttention` and the FFN groups of keras-hub blocks.

    Args:
        model: a built Keras model.

    Returns:
        `{"heads": [Group], "ffn": [Group]}`, in model order.
    """
    found = {"heads": [], "ffn": []}
    for ref in walk_layers(model):
        if isinstance(ref.layer, keras.layers.MultiHeadAttention):
            found["heads"].append(_head_group(model, ref))
        elif _is_ffn_block(ref.layer):
            found["ffn"].append(_ffn_group(model, ref))
    return found
