"""Which layers of a subclassed model read the model's own inputs."""

import keras
import numpy as np
from keras import tree

from tfcompress.core.copy_model import _generated_input
from tfcompress.core.intercept_calls import intercept_calls
from tfcompress.core.layer_tree import layers_of


def model_input_readers(model, selected):
    """`id`s of the selected layers a subclassed `model` calls on its inputs.

    In a functional graph the plan sees that a layer reads a model input. A
    subclassed model has no graph, so it is run once, eagerly, on the batch
    `copy_model` generates for its check, and every selected layer called
    with the very tensor the model was called with is reported: nothing else
    quantizes what it reads, and the converter would keep that layer, and
    the model input, float.
    Models with several inputs, or whose input is first changed by an op
    (a cast, a scale), report nothing.

    Args:
        model: a built subclassed model.
        selected: `fn(layer) -> bool`, whether a layer will be quantized.

    Returns:
        A set of `id(layer)`.
    """
    batch = _generated_input(model)
    if not isinstance(batch, np.ndarray):
        return set()  # several inputs, or none recorded
    layers = [layer for layer in layers_of(model)[1:] if selected(layer)]
    calls = []  # the tensors are kept, so their ids stay unique

    def record(layer, inputs, outputs):
        calls.append((layer, tree.flatten(inputs)))

    try:
        with intercept_calls([model] + layers, record):
            model(batch, training=False)
    except Exception:  # a model this probe cannot run: leave it to the converter
        return set()
    model_inputs = [t for layer, flat in calls if layer is model for t in flat]
    return {
        id(layer)
        for layer, flat in calls
        if layer is not model
        and not isinstance(getattr(layer, "layer", layer), keras.layers.Embedding)
        and any(t is x for t in flat for x in model_inputs)
    }
