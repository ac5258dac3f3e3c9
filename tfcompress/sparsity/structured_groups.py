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
import keras_hub
import numpy as np

from tfcompress.core._keras_internals import (
    KerasInternalsError,
    attention_gate,
    attention_projections,
    block_sublayers,
    llama_attention_classes,
)
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.replace import replace_layer
from tfcompress.sparsity.pruned_cached_attention import PrunedCachedMultiHeadAttention
from tfcompress.sparsity.pruned_llama_attention import PrunedLlamaAttention

_LlamaAttention, _ = llama_attention_classes()


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
        query_heads_per_unit: for grouped-query attention, the query heads
            each unit (a key/value head) carries; None elsewhere.
        layer_path: for heads, the path of the attention layer itself (a
            decoder block holds a self- and a cross-attention); None elsewhere.
    """

    kind: str
    path: str
    size: int
    members: list
    rebuild: object
    granular: bool = True
    commit: object = None
    query_heads_per_unit: object = None
    layer_path: str = None


def contiguous(num_units, width=1):
    """Unit `u` covers positions `[u * width, (u + 1) * width)`."""
    return np.arange(num_units * width).reshape(num_units, width)


def take_units(array, axis, units, keep):
    """The slice of `array` holding the units `keep` along `axis`.

    Positions stay in their original order, which is the smaller layer's
    layout: after `Flatten` a kept channel's rows interleave with the others'.
    """
    return np.take(array, np.sort(units[keep].reshape(-1)), axis=axis)


def sliced_copy(layer, config_changes, build_shape, weights, scope="", cls=None):
    """A new layer of `layer`'s class (or `cls`) with `config_changes`, built, holding `weights`.

    `scope` is the `/`-joined path of the layer's parent, under which the new
    variables are created so their paths are the old ones
    (`transformer_layer_0/self_attention_layer/query/kernel`).
    """
    config = dict(layer.get_config(), **config_changes)
    return built_copy((cls or type(layer)).from_config(config), build_shape, weights, scope)


def built_copy(new, build_shape, weights, scope=""):
    """`new` built under the name scope `scope`, holding `weights`."""
    with contextlib.ExitStack() as stack:
        for name in filter(None, scope.split("/")):
            stack.enter_context(keras.name_scope(name))
        if isinstance(build_shape, dict):
            new.build(**build_shape)
        else:
            new.build(build_shape)
    new.set_weights(weights)
    return new


def variable_scope(layer, fallback):
    """The name scope `layer`'s variables were created under, else `fallback`.

    A backbone inside a `CausalLM` names its variables from the backbone
    down (`transformer_layer_0/self_attention/query/kernel`), while layer
    paths start at the outer model: the new layer's variables take the old
    ones' paths.
    """
    for variable in layer.weights:
        segments = variable.path.split("/")
        if layer.name in segments[:-1]:
            return "/".join(segments[: segments.index(layer.name)])
    return fallback


def _projection_members(dense, axis_units, output_units):
    """Members of `dense` (an EinsumDense or Dense) with units along its kernel axis."""
    axis, units = axis_units
    members = [Member(dense.kernel, axis, units)]
    if output_units is not None and getattr(dense, "bias", None) is not None:
        members.append(Member(dense.bias, 0, output_units))
    return members


def _sliced_weights(layer, members, keep):
    weights = []
    for variable in layer.weights:
        member = next((m for m in members if m.variable is variable), None)
        value = variable.numpy()
        weights.append(
            value if member is None else take_units(value, member.axis, member.units, keep)
        )
    return weights


def _heads(ref, size, members, rebuild, **extra):
    """The heads `Group` of the attention layer at `ref`, named by its block's path."""
    return Group(
        "heads",
        ref.path.rpartition("/")[0] or ref.path,
        size,
        members,
        rebuild,
        granular=False,
        layer_path=ref.path,
        **extra,
    )


def _head_group(model, ref):
    mha = ref.layer
    heads = mha.num_heads
    projections = attention_projections(mha)
    producers = [projections.query, projections.key, projections.value]
    if attention_gate(mha) is not None:
        producers.append(attention_gate(mha))
    members = []
    for dense in producers:
        members += _projection_members(dense, (1, contiguous(heads)), contiguous(heads))
    members.append(Member(projections.output.kernel, 0, contiguous(heads)))
    # Under `generate` keras-hub's cached attention gets a cache sized for the
    # backbone's configured heads: the narrower layer must read part of it.
    cached = isinstance(mha, keras_hub.layers.CachedMultiHeadAttention)

    def rebuild(keep):
        rank = len(projections.query.equation.split(",")[0])
        shape = lambda dense: (None,) * (rank - 1) + (dense.kernel.shape[0],)  # noqa: E731
        new = sliced_copy(
            mha,
            {"num_heads": len(keep), "key_dim": mha.key_dim, "value_dim": mha.value_dim},
            {
                "query_shape": shape(projections.query),
                "value_shape": shape(projections.value),
                "key_shape": shape(projections.key),
            },
            _sliced_weights(mha, members, keep),
            scope=variable_scope(mha, ref.path.rpartition("/")[0]),
            cls=PrunedCachedMultiHeadAttention if cached else None,
        )
        replace_layer(model, ref, new)

    return _heads(ref, heads, members, rebuild)


def _key_value_group(model, ref):
    """Llama's grouped-query attention: a unit is one key/value head and its query heads."""
    attention = ref.layer
    groups = attention.num_key_value_heads
    per_group = attention.num_query_heads // groups
    projections = attention_projections(attention)
    members = _projection_members(projections.query, (1, contiguous(groups, per_group)), None)
    for dense in (projections.key, projections.value):
        members += _projection_members(dense, (1, contiguous(groups)), None)
    members.append(Member(projections.output.kernel, 0, contiguous(groups, per_group)))

    def rebuild(keep):
        new = built_copy(
            PrunedLlamaAttention.from_attention(attention, len(keep)),
            (None, None, projections.query.kernel.shape[0]),
            _sliced_weights(attention, members, keep),
            scope=variable_scope(attention, ref.path.rpartition("/")[0]),
        )
        replace_layer(model, ref, new)

    return _heads(ref, groups, members, rebuild, query_heads_per_unit=per_group)


def _ffn_group(model, ref, sublayers):
    block = ref.layer
    inputs = [dense for dense in (sublayers.up, sublayers.gate) if dense is not None]
    output = sublayers.down
    width = inputs[0].units
    members = []
    for dense in inputs:
        members += _projection_members(dense, (1, contiguous(width)), contiguous(width))
    members.append(Member(output.kernel, 0, contiguous(width)))

    def rebuild(keep):
        for dense in inputs:
            weights = [take_units(dense.kernel.numpy(), 1, contiguous(width), keep)]
            if dense.bias is not None:
                weights.append(take_units(dense.bias.numpy(), 0, contiguous(width), keep))
            new = sliced_copy(
                dense,
                {"units": len(keep)},
                (None, dense.kernel.shape[0]),
                weights,
                variable_scope(dense, ref.path),
            )
            replace_layer(model, dense, new)
        weights = [take_units(output.kernel.numpy(), 0, contiguous(width), keep)]
        weights += [w.numpy() for w in output.weights[1:]]
        new = sliced_copy(output, {}, (None, len(keep)), weights, variable_scope(output, ref.path))
        replace_layer(model, output, new)
        if hasattr(block, "intermediate_dim"):
            block.intermediate_dim = len(keep)

    return Group("ffn", ref.path, width, members, rebuild)


def _ffn_sublayers(layer):
    """The keras-hub block's sublayers when its feed-forward layers are Dense, else None."""
    try:
        sublayers = block_sublayers(layer)
    except KerasInternalsError:
        return None
    dense = (sublayers.up, sublayers.down)
    return sublayers if all(isinstance(d, keras.layers.Dense) for d in dense) else None


def transformer_groups(model):
    """The head groups of every attention layer and the FFN groups of keras-hub blocks.

    Heads are those of each `MultiHeadAttention` (keras-hub's BERT and GPT-2
    blocks use it) and the key/value groups of Llama's grouped-query
    attention (each with the query heads that read it).

    Args:
        model: a built Keras model.

    Returns:
        `{"heads": [Group], "ffn": [Group]}`, in model order.
    """
    found = {"heads": [], "ffn": []}
    for ref in walk_layers(model):
        if isinstance(ref.layer, keras.layers.MultiHeadAttention):
            found["heads"].append(_head_group(model, ref))
        elif isinstance(ref.layer, _LlamaAttention):
            found["heads"].append(_key_value_group(model, ref))
        elif (sublayers := _ffn_sublayers(ref.layer)) is not None:
            found["ffn"].append(_ffn_group(model, ref, sublayers))
    # Groups are told apart by path (per-layer fractions, counts, scores): a
    # block's second attention (a decoder's cross-attention) goes by its own.
    seen = set()
    for index, group in enumerate(found["heads"]):
        if group.path in seen:
            found["heads"][index] = dataclasses.replace(group, path=group.layer_path)
        seen.add(group.path)
    return found
