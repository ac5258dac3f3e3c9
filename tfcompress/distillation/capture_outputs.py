"""Record what chosen layers return while a model runs, any model type."""

import contextlib

from tfcompress.core.intercept_calls import intercept_calls


def _first_tensor(output, layer):
    # keras-hub decoders return `(hidden, cache)` when given a cache: the
    # hidden state comes first.
    if isinstance(output, (list, tuple)) and output:
        return output[0]
    if isinstance(output, dict):
        raise ValueError(
            f"Layer {layer.name!r} returns a dict ({sorted(output)}), which "
            "has no single activation to distil. Pair one of its sublayers "
            "instead."
        )
    return output


class Captured:
    """The activations recorded by `capture_outputs`, one per layer."""

    def __init__(self, layers):
        self._layers = list(layers)
        self._calls = {id(layer): [] for layer in self._layers}

    def _record(self, layer, output):
        self._calls[id(layer)].append(_first_tensor(output, layer))

    def __getitem__(self, layer):
        calls = self._calls[id(layer)]
        if len(calls) != 1:
            raise ValueError(
                f"Layer {layer.name!r} ran {len(calls)} times in one forward "
                "pass, so its activation is ambiguous (a tied embedding, for "
                "example, runs forward and reversed). Pair a layer that runs "
                "once per forward pass."
            )
        return calls[0]

    def __len__(self):
        return len(self._layers)


@contextlib.contextmanager
def capture_outputs(layers):
    """Records the output of each layer in `layers` while the block runs.

    Works for layers at any depth of any model (Sequential, functional,
    subclassed, keras-hub), through `tfcompress.core.intercept_calls`: the
    model runs once, and what it computes is what is recorded (under
    `tf.function`, the traced tensors).

    Args:
        layers: Keras layers.

    Yields:
        A `Captured`; `captured[layer]` is the tensor the layer returned
        (the first element when it returns a tuple).

    Raises:
        ValueError: on lookup, when the layer did not run exactly once.

    Example:

    ```python
    block = tfcompress.core.find_layer(backbone, "transformer_layer_1").layer
    with tfcompress.distillation.capture_outputs([block]) as captured:
        backbone(inputs)
    hidden = captured[block]
    ```
    """
    captured = Captured(layers)
    with intercept_calls(layers, lambda layer, _, outputs: captured._record(layer, outputs)):
        yield captured
