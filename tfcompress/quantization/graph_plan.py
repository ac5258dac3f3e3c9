"""Reads a functional graph to decide where fake quantization goes.

TFLite fuses a Conv/Dense with the BatchNormalization and ReLU after it, and
keeps int8 tensors only between fused ops; fake quantization must sit exactly
there. Layers outside functional graphs (inside subclassed or keras-hub
layers) keep the per-layer default: weights and output quantized.
"""

import dataclasses

import keras

from tfcompress.core.wrapper import build_shape_of
from tfcompress.quantization.quantize_scheme import FOLDABLE


@dataclasses.dataclass
class Plan:
    """Decisions keyed by `id(layer)` of layers as they appear in the graph."""

    fold: dict = dataclasses.field(default_factory=dict)  # conv -> its BN
    folded_bn: set = dataclasses.field(default_factory=set)
    no_output: set = dataclasses.field(default_factory=set)
    quantize_input: set = dataclasses.field(default_factory=set)


def _inner(layer):
    from tfcompress.quantization.quantize_annotate import QuantizeAnnotate

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
    """`(consumers, input_fed)`: consumer lists and layers fed by an Input."""
    consumers, input_fed = {}, set()
    if isinstance(container, keras.Sequential):
        layers = container.layers
        for first, second in zip(layers, layers[1:]):
            consumers[id(first)] = [second]
        if layers:
            input_fed.add(id(layers[0]))
        return consumers, input_fed
    for op in container.operations:
        for index, node in enumerate(op._inbound_nodes):
            if f"{id(op)}_ib-{index}" not in container._nodes:
                continue
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if isinstance(producer, keras.layers.InputLayer):
                    if "float" in str(tensor.dtype):
                        input_fed.add(id(op))
                else:
                    consumers.setdefault(id(producer), []).append(op)
    for tensor in container.outputs:  # a model output is one more consumer
        consumers.setdefault(id(tensor._keras_history.operation), []).append(None)
    return consumers, input_fed


def plan_graph(container, selected, plan, top_level):
    """Adds the decisions for one functional/Sequential `container` to `plan`.

    Args:
        container: a functional or Sequential model.
        selected: `fn(layer) -> bool`, whether a layer will be quantized.
        plan: the `Plan` to fill.
        top_level: whether the container's inputs are the model's inputs.
    """
    consumers, input_fed = _edges(container)
    layers = container.layers if isinstance(container, keras.Sequential) else container.operations
    for layer in layers:
        if id(layer) in plan.folded_bn or not selected(layer):
            continue
        if top_level and id(layer) in input_fed:
            plan.quantize_input.add(id(layer))
        out = consumers.get(id(layer), [])
        inner = _inner(layer)
        if (
            isinstance(inner, FOLDABLE)
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
    return plan
