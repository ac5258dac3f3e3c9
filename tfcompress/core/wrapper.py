"""Base class of every tfcompress layer wrapper."""

import inspect

import keras

from tfcompress.core.checks import ensure_keras3_layer
from tfcompress.core.substitute import substitute_variables


def build_shape_of(layer):
    """The input shape `layer` was built with, or None when unknown."""
    config = layer.get_build_config() if layer.built else None
    if not config:
        return None
    if "input_shape" in config:
        return config["input_shape"]
    shapes = config.get("shapes_dict") or {}
    return next(iter(shapes.values()), None) if len(shapes) == 1 else None


class CompressionWrapper(keras.layers.Wrapper):
    """Runs a layer with some of its variables replaced by computed tensors.

    Subclasses add their own state in `build_wrapper()` and return
    `(variable, tensor)` pairs from `substitutions(training)`: e.g. the kernel
    and `kernel * mask` (pruning) or `fake_quant(kernel)` (QAT). The wrapped
    layer's `call` runs unchanged, whatever its class, so one wrapper covers
    Dense, Conv, EinsumDense and user layers alike, and gradients reach the
    real variables.

    `strip()` gives back the wrapped layer computing what the wrapper
    computes; `tfcompress.core.strip_wrappers` does it for a whole model, for
    every technique alike.

    Args:
        layer: the Keras 3 layer to wrap.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`...).

    Attributes:
        carries_learned_ranges: class attribute; True for wrappers whose own
            state the export needs (quantization ranges learned in training),
            which `strip_wrappers` keeps unless told otherwise.
    """

    carries_learned_ranges = False

    def __init__(self, layer, **kwargs):
        ensure_keras3_layer(layer, "layer")
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        parameters = inspect.signature(layer.call).parameters
        self._inner_has_training = "training" in parameters
        self._inner_has_mask = "mask" in parameters
        # Keras masks (e.g. from `Embedding(mask_zero=True)`) pass through
        # the wrapper exactly as through the layer it wraps.
        self.supports_masking = getattr(layer, "supports_masking", False)

    def build(self, input_shape=None):
        if not self.layer.built:
            self.layer.build(input_shape)
        self.build_wrapper()
        self.built = True

    def build_wrapper(self):
        """Creates the wrapper's own variables; the inner layer is built."""

    def substitutions(self, training):
        """`(variable, tensor)` pairs to substitute during the inner call."""
        return []

    def strip(self):
        """The wrapped layer, its variables set to what the wrapper computes.

        The default assigns each substitution of `substitutions(False)` (e.g.
        `kernel * mask`) to its variable and returns the inner layer, which
        then computes the wrapper's inference outputs with none of its state.
        Wrappers with more to undo override it.

        Returns:
            The wrapped layer.
        """
        for variable, tensor in self.substitutions(False):
            variable.assign(tensor)
        return self.layer

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # `keras.layers.Wrapper.from_config` pops "layer" from the caller's dict.
        return super().from_config(dict(config), custom_objects=custom_objects)

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if self._inner_has_training:
            kwargs["training"] = training
        if self._inner_has_mask and mask is not None:
            kwargs["mask"] = mask
        pairs = self.substitutions(training)
        with substitute_variables(pairs, self.layer.variables):
            return self.layer(inputs, *args, **kwargs)
