"""See what chosen layers are called with and return, at any depth of any model."""

import contextlib

import keras


@contextlib.contextmanager
def intercept_calls(layers, hook):
    """Calls `hook(layer, inputs, outputs)` after each call of each layer.

    Works for layers at any depth of Sequential, functional, subclassed and
    keras-hub models, because it wraps each layer's `call` for the duration
    of the block instead of building a second model from `layer.output`: the
    model runs once, and what it computes is what the hook sees (under
    `tf.function`, the traced tensors). `inputs` is the first positional
    argument of `call` (a list for merge layers such as `Add`). Each layer's
    own `call` is restored on exit, even after an error. This is the one
    place in tfcompress that hooks a live layer: capturing activations for
    distillation, calibrating ranges and gathering the statistics of one-shot
    pruning and low-rank factorization all go through it.

    Args:
        layers: Keras layers (duplicates are hooked once).
        hook: a callable `hook(layer, inputs, outputs)`; its return value is
            ignored. It may keep the tensors.

    Yields:
        None.

    Raises:
        TypeError: when `hook` is not callable or an element of `layers` is
            not a Keras layer.

    Example:

    ```python
    grams = {}
    def accumulate(layer, inputs, outputs):
        x = keras.ops.reshape(inputs, (-1, inputs.shape[-1]))
        grams[layer.name] = grams.get(layer.name, 0) + keras.ops.matmul(
            keras.ops.transpose(x), x)

    with tfcompress.core.intercept_calls([dense], accumulate):
        model.predict(data)
    ```
    """
    if not callable(hook):
        raise TypeError(f"`hook` must be callable; received {hook!r}.")
    unique = {}
    for layer in layers:
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                f"`layers` must hold Keras layers; received {type(layer).__name__} "
                f"{layer!r}. Find layers with `tfcompress.core.find_layer` or "
                "`walk_layers`."
            )
        unique[id(layer)] = layer
    patched = []
    try:
        for layer in unique.values():
            original = layer.call
            had_own = "call" in vars(layer)

            def hooked(*args, _layer=layer, _original=original, **kwargs):
                outputs = _original(*args, **kwargs)
                inputs = args[0] if args else next(iter(kwargs.values()), None)
                hook(_layer, inputs, outputs)
                return outputs

            # Setting through `object` keeps Keras's attribute tracking out of it.
            object.__setattr__(layer, "call", hooked)
            patched.append((layer, original, had_own))
        yield
    finally:
        for layer, original, had_own in reversed(patched):
            if had_own:
                object.__setattr__(layer, "call", original)
            else:
                object.__delattr__(layer, "call")
