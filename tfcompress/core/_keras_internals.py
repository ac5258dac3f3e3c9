"""Every private Keras attribute and module tfcompress relies on, in one place.

Keras 3 has no public API to edit a built functional graph, to add a sublayer
to a built layer, or to read the current stateless scope. tfcompress does all
three, through the functions below and nowhere else, so a Keras release that
moves one of them breaks here, with a message naming what moved, and
`tests/core/_keras_internals_test.py` says so on the supported versions.
Seen on Keras 3.15 (TensorFlow backend).
"""

import contextlib
import sys
from typing import NamedTuple

import keras

try:
    from keras.src.backend import get_stateless_scope as _get_stateless_scope
    from keras.src.ops.symbolic_arguments import SymbolicArguments as _SymbolicArguments
    from keras.src.saving import saving_lib as _saving_lib
except ImportError as error:  # pragma: no cover - depends on the Keras release
    raise ImportError(
        f"tfcompress needs `keras.src.backend.get_stateless_scope` and "
        f"`keras.src.ops.symbolic_arguments.SymbolicArguments` and "
        f"`keras.src.saving.saving_lib`, which Keras "
        f"{keras.__version__} does not have ({error}). Install a Keras 3 release "
        "tfcompress supports (3.15), or update tfcompress/core/_keras_internals.py."
    ) from error

NODE_KEY_SEPARATOR = "_ib-"

# Attributes of Keras layers and models that hold bookkeeping references (the
# graph, trackers, compile state), not the layer's own children.
BOOKKEEPING_ATTRIBUTES = frozenset(
    {
        "_layers",
        "_tracked",
        "_inbound_nodes",
        "_outbound_nodes",
        "_operations",
        "_operations_by_depth",
        "_nodes_by_depth",
        "_functional",
        "_inputs",
        "_outputs",
        "_inputs_struct",
        "_outputs_struct",
        "_trainable_variables",
        "_non_trainable_variables",
        "_metrics",
        "_seed_generators",
        "_losses",
        "_losses_override",
        "_self_unconditional_checkpoint_dependencies",
        "_self_unconditional_dependency_names",
        "_self_unconditional_deferred_dependencies",
        "_self_saveable_object_factories",
        "_compile_metrics",
        "_compile_loss",
        "_loss_tracker",
        "optimizer",
    }
)


class KerasInternalsError(RuntimeError):
    """A private Keras attribute tfcompress relies on is gone or changed."""


def _versions():
    # keras-hub is named only when loaded: tfcompress never imports it for this.
    keras_hub = sys.modules.get("keras_hub")
    hub = f", keras-hub {keras_hub.__version__}" if keras_hub is not None else ""
    return f"Keras {keras.__version__}{hub}"


def _private(obj, name, what):
    try:
        return getattr(obj, name)
    except AttributeError as error:
        raise KerasInternalsError(
            f"{_versions()} has no `{type(obj).__name__}.{name}` ({what}), "
            "which tfcompress relies on. Install a Keras 3 release tfcompress "
            "supports (Keras 3.15, keras-hub 0.32), or update tfcompress/core/_keras_internals.py."
        ) from error


# Functional graphs: nodes, node keys, operations.


def has_graph(model):
    """Whether `model` is a functional graph (it has a list of operations)."""
    return isinstance(model, keras.Model) and hasattr(model, "_operations")


def inbound_nodes(layer):
    """The live list of nodes where `layer` was called (one per call)."""
    return _private(layer, "_inbound_nodes", "the nodes calling the layer")


def outbound_nodes(layer):
    """The live list of nodes that consume `layer`'s outputs."""
    return _private(layer, "_outbound_nodes", "the nodes reading the layer")


def call_count(layer):
    """How many times `layer` was called symbolically (0 when never)."""
    return len(getattr(layer, "_inbound_nodes", ()))


def node_key(operation, node_index):
    """The key a functional model stores for the `node_index`-th call of `operation`."""
    return f"{id(operation)}{NODE_KEY_SEPARATOR}{node_index}"


def parse_node_key(key):
    """`(id of the operation, node index)` of a functional model's node key."""
    operation_id, separator, index = key.rpartition(NODE_KEY_SEPARATOR)
    if not separator or not operation_id.isdigit() or not index.isdigit():
        raise KerasInternalsError(
            f"Keras {keras.__version__} stores functional node keys as {key!r}, not "
            f"'<id>{NODE_KEY_SEPARATOR}<index>'. Update tfcompress/core/_keras_internals.py."
        )
    return int(operation_id), int(index)


def node_keys(model):
    """The set of node keys of the functional `model`'s own graph."""
    return _private(model, "_nodes", "the keys of the graph's nodes")


def set_node_keys(model, keys):
    model._nodes = set(keys)


def graph_operations(model):
    """The live list of the functional `model`'s operations."""
    return _private(model, "_operations", "the graph's operations")


def operations_by_depth(model):
    """The functional `model`'s `{depth: [operations]}` dict."""
    return _private(model, "_operations_by_depth", "the graph's operations by depth")


def sequential_graph(model):
    """The functional graph a built `Sequential` runs, or None."""
    return _private(model, "_functional", "the graph of a Sequential")


def keras_history(tensor):
    """`(operation, node_index, tensor_index)` of a symbolic tensor, or None."""
    return getattr(tensor, "_keras_history", None)


def set_keras_history(tensor, operation, node_index):
    history = keras_history(tensor)
    tensor._keras_history = history._replace(operation=operation, node_index=node_index)


def symbolic_arguments(*args, **kwargs):
    """The object a node keeps its call arguments in (`node.arguments`)."""
    return _SymbolicArguments(*args, **kwargs)


def outputs_struct(model):
    """The output structure of a functional `model`, or None for subclassed ones."""
    return getattr(model, "_outputs_struct", None)


# Layers: tracked sublayers, the state tracker, tracked lists.


def tracked_layers(layer):
    """The live list of sublayers Keras tracks for `layer`, or None."""
    layers = getattr(layer, "_layers", None)
    return layers if isinstance(layers, list) else None


@contextlib.contextmanager
def unlocked(layer):
    """Lets a built layer take new sublayers (Keras locks its tracker at build)."""
    tracker = getattr(layer, "_tracker", None)
    was_locked = bool(tracker and tracker.locked)
    if tracker is not None:
        tracker.unlock()
    try:
        yield layer
    finally:
        if was_locked:
            tracker.lock()


def set_list_items(container, items):
    """Sets a list's contents in place.

    TensorFlow's `ListWrapper` (what Keras layers' list attributes become on
    the TF backend) refuses to be saved once an element was replaced through
    its own methods; editing its storage and acknowledging the new snapshot
    keeps it exportable.
    """
    storage = getattr(container, "_storage", None)
    if isinstance(storage, list) and hasattr(container, "_update_snapshot"):
        storage[:] = items
        container._update_snapshot()
    else:
        container[:] = items


# Attention and transformer blocks (Keras and keras-hub).


class AttentionProjections(NamedTuple):
    """The four projection layers of an attention layer (EinsumDense or Dense)."""

    query: keras.layers.Layer
    key: keras.layers.Layer
    value: keras.layers.Layer
    output: keras.layers.Layer


def attention_projections(layer):
    """The query, key, value and output projections of a built attention layer.

    Covers `keras.layers.MultiHeadAttention` (and keras-hub's
    `CachedMultiHeadAttention`, a subclass, as in GPT-2 and BERT blocks) and
    keras-hub attention layers that keep them as `_query_dense`, `_key_dense`,
    `_value_dense` and `_output_dense` (`LlamaAttention`, used by Llama 3).

    Args:
        layer: a built attention layer.

    Returns:
        `AttentionProjections(query, key, value, output)`: the live layers.

    Raises:
        ValueError: if `layer` is not built (its projections do not exist yet).
        KerasInternalsError: if the installed Keras or keras-hub names them
            differently.
    """
    if not layer.built:
        raise ValueError(
            f"`layer` must be built to read its projections. Received: the unbuilt "
            f"{type(layer).__name__} {layer.name!r}; call the model on data first."
        )
    names = ("_query_dense", "_key_dense", "_value_dense", "_output_dense")
    return AttentionProjections(
        *(_private(layer, name, "an attention projection") for name in names)
    )


class BlockSublayers(NamedTuple):
    """The sublayers of a keras-hub transformer block, in the order they run.

    `gate` is None for blocks without a gated feed-forward (GPT-2, BERT).
    """

    attention: keras.layers.Layer
    attention_norm: keras.layers.Layer
    ffn_norm: keras.layers.Layer
    up: keras.layers.Layer
    gate: object
    down: keras.layers.Layer


def _first_private(obj, names, what):
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return _private(obj, names[0], what)


def block_sublayers(block):
    """The attention, norms and feed-forward layers of a keras-hub transformer block.

    Covers `TransformerEncoder` (BERT), `TransformerDecoder` (GPT-2) and
    `LlamaTransformerDecoder` (Llama 3), which keep them as private attributes
    (`_self_attention_layer`, `_self_attention_layer_norm` or
    `_self_attention_layernorm`, `_feedforward_intermediate_dense`, ...).

    Args:
        block: a built keras-hub transformer block.

    Returns:
        `BlockSublayers(attention, attention_norm, ffn_norm, up, gate, down)`:
        the live layers.

    Raises:
        KerasInternalsError: if the installed keras-hub names them differently.
    """
    return BlockSublayers(
        attention=_private(block, "_self_attention_layer", "the block's self-attention"),
        attention_norm=_first_private(
            block,
            ("_self_attention_layer_norm", "_self_attention_layernorm"),
            "the norm before or after the self-attention",
        ),
        ffn_norm=_first_private(
            block,
            ("_feedforward_layer_norm", "_feedforward_layernorm"),
            "the norm before or after the feed-forward",
        ),
        up=_private(block, "_feedforward_intermediate_dense", "the feed-forward up projection"),
        gate=getattr(block, "_feedforward_gate_dense", None),
        down=_private(block, "_feedforward_output_dense", "the feed-forward down projection"),
    )


def rotary_cos_sin(rotary_embedding, inputs, start_index=0):
    """`(cos, sin)` a keras-hub `RotaryEmbedding` multiplies `inputs` by.

    The layer's own tables, so any scaling it applies (Llama 3.1 frequency
    bands, position scaling) is included.

    Args:
        rotary_embedding: a keras-hub `RotaryEmbedding` layer.
        inputs: a tensor `[batch, positions, head_dim]` (only its shape is read).
        start_index: the position of the first row.

    Returns:
        `(cos, sin)`, each broadcastable to `inputs`.
    """
    compute = _private(rotary_embedding, "_compute_cos_sin_embedding", "the rotary cos/sin tables")
    return compute(inputs, start_index)


def build_cache(causal_lm, token_ids):
    """The key/value cache keras-hub's `generate` starts from, seeded with `token_ids`.

    Args:
        causal_lm: a keras-hub `CausalLM` with `call_with_cache` (GPT-2, Llama, ...).
        token_ids: int tensor `[batch, max_length]`; its length sets the cache's.

    Returns:
        The cache tensor `call_with_cache` takes.
    """
    _, cache = _private(causal_lm, "_build_cache", "how generate builds its cache")(token_ids)
    return cache


# Variables and saving.


def kernel_variable(layer):
    """The variable a built `Dense` or `EinsumDense` keeps its kernel in, or None.

    `layer.kernel` is a tensor (kernel plus the LoRA product) when LoRA is
    enabled; this is the variable itself, what a pruning mask is assigned to.
    None for layers that keep no kernel variable (GPTQ- or AWQ-quantized ones).
    """
    return getattr(layer, "_kernel", None)


def current_stateless_scope():
    """The active `keras.StatelessScope`, or None."""
    return _get_stateless_scope()


def unpickler(model_class):
    """The classmethod Keras pickles models with: `(unpickler, (file,))`."""
    return _private(model_class, "_unpickle_model", "how Keras unpickles models")


def is_asset_file(archive_name, filename):
    """Whether `archive_name` (a `.keras` zip entry) is an asset called `filename`.

    Keras writes a layer's assets under `<assets directory>/<path of the layer>/`.
    """
    directory = _private(_saving_lib, "_ASSETS_DIRNAME", "the assets directory of .keras files")
    return archive_name.startswith(directory + "/") and archive_name.endswith("/" + filename)


# Attention layers that structured pruning narrows.


def attention_gate(layer):
    """The gate projection of a `MultiHeadAttention` built with `use_gate=True`, or None."""
    return getattr(layer, "_gate_dense", None)


def llama_attention_classes():
    """keras-hub's `(LlamaAttention, LlamaRotaryEmbedding)` classes.

    keras-hub does not export them; Llama 3 blocks hold a `LlamaAttention`,
    and a Llama attention with fewer heads subclasses it.
    """
    try:
        from keras_hub.src.models.llama.llama_attention import LlamaAttention
        from keras_hub.src.models.llama.llama_rotary_embedding import LlamaRotaryEmbedding
    except ImportError as error:  # pragma: no cover - depends on the keras-hub release
        raise KerasInternalsError(
            f"keras-hub has no `keras_hub.src.models.llama.llama_attention.LlamaAttention` "
            f"or `llama_rotary_embedding.LlamaRotaryEmbedding` ({error}), which "
            "tfcompress's Llama head pruning relies on. Install keras-hub 0.32, or "
            "update tfcompress/core/_keras_internals.py."
        ) from error
    return LlamaAttention, LlamaRotaryEmbedding


def cross_attention_sublayers(block):
    """`(attention, norm)` of a keras-hub block's cross-attention, or None without one.

    keras-hub's `TransformerDecoder` builds `_cross_attention_layer` and
    `_cross_attention_layer_norm` when it is first called with an
    `encoder_sequence` (BART- and T5-style decoders), and leaves the first
    None otherwise; blocks of other classes have neither.
    """
    attention = getattr(block, "_cross_attention_layer", None)
    if attention is None:
        return None
    return attention, _private(
        block, "_cross_attention_layer_norm", "the norm before or after the cross-attention"
    )
