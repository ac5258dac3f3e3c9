"""Reads a functional graph to decide where fake quantization goes.

TFLite fuses a Conv/Dense with the BatchNormalization and ReLU after it, and
keeps int8 tensors only between fused ops; fake quantization must sit exactly
there:
- Conv/Dense + BatchNormalization: folded (`FoldBatchNormQuantizeWrapper`).
- ... + ReLU/ReLU6: no quantizer on the conv output, one after the ReLU.
- A layer with weights whose input carries no range (a float model input,
  or the output of a layer left float such as LayerNormalization, through
  pass-through layers): its input is quantized.
- A layer read only by layers that compute in float (LayerNormalization,
  e.g. a transformer's embeddings sum): its output stays float, as an int8
  tensor there would only add rounding error and a quantize/dequantize pair.
- An Embedding read only by such float-output layers: its table gets one
  int8 scale per dimension (`QuantizeWrapper(embedding_channel_scales=True)`),
  the gathered rows being scaled back in float anyway.
Layers outside functional graphs (inside subclassed or keras-hub layers)
keep the per-layer default: weights and output quantized, input only for
a MultiHeadAttention's output projection (see `quantize_apply`).
"""

import dataclasses

import keras

from tfcompress.core import _keras_internals as internals
from tfcompress.core.wrapper import build_shape_of
from tfcompress.quantization.quantize_annotate import QuantizeAnnotate
from tfcompress.quantization.quantize_scheme import (
    FLOAT_COMPUTE,
    FOLDABLE,
    PASSTHROUGH,
    weight_spec,
)


@dataclasses.dataclass
class Plan:
    """Decisions keyed by `id(layer)` of layers as they appear in the graph."""

    fold: dict = dataclasses.field(default_factory=dict)  # conv -> its BN
    folded_bn: set = dataclasses.field(default_factory=set)
    no_output: set = dataclasses.field(default_factory=set)
    quantize_input: set = dataclasses.field(default_factory=set)
    read_by_norm: set = dataclasses.field(
        default_factory=set
    )  # outputs read only by float-compute layers
    float_gather: set = dataclasses.field(default_factory=set)  # embeddings read in float


def _inner(layer):
    return layer.layer if isinstance(layer, QuantizeAnnotate) else layer


def _is_relu(layer):
    layer = _inner(layer)
    if isinstance(layer, keras.layers.ReLU):
        return layer.negative_slope == 0 and layer.threshold == 0 and layer.max_value in (None, 6)
    if isinstance(layer, keras.layers.Activation):
        return keras.activations.serialize(layer.activation) in ("relu", "relu6")
    return False


def _linear(layer):
    activation = getattr(layer, "activation", None)
    return activation is None or keras.activations.serialize(activation) == "linear"


def _channels_last(batch_norm):
    shape = build_shape_of(batch_norm)
    return shape is not None and batch_norm.axis in (-1, len(shape) - 1)


def _edges(container):
    """`(consumers, producers)` of every layer, keyed by `id(layer)`.

    Producers are `(layer, dtype)` pairs (InputLayers included); a model
    output counts as one more consumer, recorded as None.
    """
    consumers, producers = {}, {}
    if isinstance(container, keras.Sequential):
        layers = container.layers
        for first, second in zip(layers, layers[1:]):
            consumers[id(first)] = [second]
            producers[id(second)] = [(first, "float32")]
        if layers:
            dtype = str(container.inputs[0].dtype) if container.inputs else "float32"
            producers[id(layers[0])] = [(keras.layers.InputLayer(shape=(1,)), dtype)]
        return consumers, producers
    keys = internals.node_keys(container)
    for op in container.operations:
        for index, node in enumerate(internals.inbound_nodes(op)):
            if internals.node_key(op, index) not in keys:
                continue
            for tensor in node.input_tensors:
                producer = internals.keras_history(tensor).operation
                producers.setdefault(id(op), []).append((producer, str(tensor.dtype)))
                if not isinstance(producer, keras.layers.InputLayer):
                    consumers.setdefault(id(producer), []).append(op)
    for tensor in container.outputs:  # a model output is one more consumer
        consumers.setdefault(id(internals.keras_history(tensor).operation), []).append(None)
    return consumers, producers


def _reads_float(layer, producers, selected, top_level, float_output):
    """Whether `layer`'s single input carries no quantization range yet.

    Follows pass-through layers (pooling, reshape) back to the layer that
    set the range. Model inputs count when they are the model's own (top
    level) float inputs.
    """
    sources = producers.get(id(layer), [])
    while (
        len(sources) == 1
        and isinstance(_inner(sources[0][0]), PASSTHROUGH)
        and not isinstance(sources[0][0], keras.layers.InputLayer)
    ):
        sources = producers.get(id(sources[0][0]), [])
    if len(sources) != 1:
        return False
    producer, dtype = sources[0]
    if isinstance(producer, keras.layers.InputLayer):
        return top_level and "float" in dtype
    return (not selected(producer) or float_output(producer)) and weight_spec(
        _inner(layer)
    ) is not None


def plan_graph(container, selected, plan, top_level, fold=True, float_output=lambda layer: False):
    """Adds the decisions for one functional/Sequential `container` to `plan`.

    Args:
        container: a functional or Sequential model.
        selected: `fn(layer) -> bool`, whether a layer will be quantized.
        plan: the `Plan` to fill.
        top_level: whether the container's inputs are the model's inputs.
        fold: fold BatchNormalization into the Conv/Dense before it.
        float_output: `fn(layer) -> bool`, whether a quantized layer still
            outputs float (an outlier split adds its halves in float).
    """
    consumers, producers = _edges(container)
    layers = container.layers if isinstance(container, keras.Sequential) else container.operations
    for layer in layers:
        if id(layer) in plan.folded_bn or not selected(layer):
            continue
        if _reads_float(layer, producers, selected, top_level, float_output) and not isinstance(
            _inner(layer), keras.layers.Embedding
        ):
            plan.quantize_input.add(id(layer))
        out = consumers.get(id(layer), [])
        inner = _inner(layer)
        if (
            fold
            and isinstance(inner, FOLDABLE)
            and _linear(inner)
            and len(out) == 1
            and isinstance(_inner(out[0]), keras.layers.BatchNormalization)
            and _channels_last(_inner(out[0]))
            and selected(out[0])
        ):
            plan.fold[id(layer)] = out[0]
            plan.folded_bn.add(id(out[0]))
            out = consumers.get(id(out[0]), [])
        if len(out) == 1 and _is_relu(out[0]) and selected(out[0]):
            plan.no_output.add(id(layer))
        if (
            out
            and all(
                reader is not None and isinstance(_inner(reader), FLOAT_COMPUTE) for reader in out
            )
            and not float_output(layer)  # an outlier split or output scales: float already
        ):
            plan.no_output.add(id(layer))
            plan.read_by_norm.add(id(layer))
    for layer in layers:
        readers = [r for r in consumers.get(id(layer), []) if not _reads_shape_only(r)]
        if (
            isinstance(_inner(layer), keras.layers.Embedding)
            and selected(layer)
            and readers
            and all(_computes_in_float(reader, plan) for reader in readers)
        ):
            plan.float_gather.add(id(layer))
    return plan


def _reads_shape_only(layer):
    """keras-hub's PositionEmbedding reads the token embeddings for their shape."""
    return layer is not None and type(_inner(layer)).__name__ == "PositionEmbedding"


def _computes_in_float(layer, plan):
    """A weightless layer (an Add) whose output stays float reads float inputs."""
    return (
        layer is not None and id(layer) in plan.read_by_norm and weight_spec(_inner(layer)) is None
    )
