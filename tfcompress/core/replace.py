"""Put a different layer in place of any layer of a model, and keep it saved."""

import keras

from tfcompress.core.checks import ensure_keras3_layer
from tfcompress.core.layer_tree import LayerRef, child_layers, find_layer, walk_layers
from tfcompress.core.recipe import attach_recipe, needs_recipe
from tfcompress.core.replacements import record_replacement
from tfcompress.core.swap import swap_layer
from tfcompress.core.wrapper import CompressionWrapper


def _resolve(model, path_or_layer):
    """The `LayerRef` of the layer to replace."""
    if isinstance(path_or_layer, LayerRef):
        return path_or_layer
    if isinstance(path_or_layer, str):
        return find_layer(model, path_or_layer)
    ensure_keras3_layer(path_or_layer, "path_or_layer")
    for index, child in enumerate(child_layers(model)):
        if child is path_or_layer:
            return LayerRef(child.name, child, model, (index,))
    for ref in walk_layers(model):
        if ref.layer is path_or_layer:
            return ref
    raise ValueError(
        f"Layer {path_or_layer.name!r} is not a direct sublayer of "
        f"{model.name!r}, nor nested inside it. Pass a layer of the model, or "
        "its path as `tfcompress.core.walk_layers` lists it."
    )


def _built(new_layer, old):
    if new_layer.built:
        return new_layer
    config = old.get_build_config() if old.built else None
    if not config:
        raise ValueError(
            f"`new_layer` ({new_layer.name!r}) is not built, and the layer it "
            f"replaces ({old.name!r}) records no input shape to build it with. "
            "Build it first, e.g. `new_layer.build(input_shape)`."
        )
    try:
        new_layer.build_from_config(config)
    except Exception as error:
        raise ValueError(
            f"`new_layer` ({new_layer.name!r}) is not built and could not be "
            f"built with the input shapes of {old.name!r} ({config}): {error}. "
            "Build it yourself with the shapes it will receive."
        ) from error
    return new_layer


def _check_serializable(new_layer):
    try:
        keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(new_layer))
    except Exception as error:
        raise TypeError(
            f"`new_layer` ({type(new_layer).__name__} {new_layer.name!r}) cannot be "
            f"rebuilt from its config ({error}), so a saved model could not hold "
            "it. Register its class with "
            "`@keras.saving.register_keras_serializable()` and give it a "
            "`get_config` covering its `__init__` arguments."
        ) from error


def replace_layer(model, path_or_layer, new_layer):
    """Puts `new_layer` in place of a layer of `model`, at any depth, in place.

    The layer may sit anywhere: inside a keras-hub block (an attribute such
    as `TransformerEncoder._feedforward_intermediate_dense`), a subclassed
    model, a list of blocks, a `Sequential` or a functional graph. The new
    layer may have other shapes, another class, other sublayers (a
    `MultiHeadAttention` with fewer heads, a narrower `Dense`, a small
    model of two `Dense` layers). Unless the model's own config already holds
    it (a layer directly in a plain `Sequential` or functional model), the
    model records "this path is now this layer with this config" in its
    config, so `keras.saving.load_model`, `tfcompress.saving.load_model` and
    `tfcompress.core.copy_model` rebuild the model, put the new layer in
    place, then load the weights (the model keeps its class).

    The caller builds `new_layer` and sets its weights (before or after this
    call: they are its own variables; nothing is copied from the old layer).
    An unbuilt `new_layer` is built with the old layer's input shapes. The
    caller also keeps the model consistent: replacing a layer by one with a
    different output width means replacing its readers too. Recompile a
    compiled model afterwards (the optimizer tracked the old variables).

    Args:
        model: the model you will save or copy (the outermost one): the
            replacement is recorded in its config.
        path_or_layer: the layer to replace: its path as
            `tfcompress.core.walk_layers` lists it (e.g.
            `"transformer_layer_1/feedforward_output_dense"`), a `LayerRef`
            from it, or the layer object itself.
        new_layer: the Keras 3 layer to put there, registered with Keras (it
            is saved by its config). A `CompressionWrapper` around the old
            layer is accepted too (recorded as a wrapper, the way
            `transform_layers` does it, but only when `model` gets a recipe
            from `transform_layers` or `attach_recipe`).

    Returns:
        `model`.

    Raises:
        KeyError: when no layer has that path (close paths are listed).
        ValueError: when the layer is not in `model`, or `new_layer` is not
            built and cannot be built with the old layer's input shapes.
        TypeError: for non-Keras-3 arguments, a `new_layer` that cannot be
            rebuilt from its config, or a non-wrapper replacement when
            `model` is a layer rather than a `keras.Model`.

    Example:

    ```python
    ref = tfcompress.core.find_layer(
        backbone, "transformer_layer_1/feedforward_intermediate_dense")
    narrow = keras.layers.Dense(256, activation="gelu", name=ref.layer.name)
    narrow.build((None, None, 384))
    narrow.set_weights([kernel[:, keep], bias[keep]])
    tfcompress.core.replace_layer(backbone, ref, narrow)
    backbone.save("b.keras")  # loads back as a BertBackbone with the narrow layer
    ```
    """
    ensure_keras3_layer(model, "model")
    ensure_keras3_layer(new_layer, "new_layer")
    ref = _resolve(model, path_or_layer)
    wrapper = isinstance(new_layer, CompressionWrapper)
    if not wrapper and not isinstance(model, keras.Model):
        raise TypeError(
            f"`model` must be the `keras.Model` that holds the layer (the one "
            f"you save), so it can record the replacement. Received the "
            f"{type(model).__name__} {model.name!r}: pass the outermost model "
            "and the layer's path in it."
        )
    if new_layer is ref.layer:
        raise ValueError(f"`new_layer` is the layer at {ref.path!r} itself; pass a new layer.")
    _built(new_layer, ref.layer)
    if not wrapper:
        _check_serializable(new_layer)
    swap_layer(ref.parent, ref.layer, new_layer)
    if record_replacement(ref.layer, new_layer) and needs_recipe(model, [ref]):
        attach_recipe(model)
    return model


def recompile(model):
    """Compiles `model` again as it was compiled, with a fresh optimizer.

    A compiled model whose layers were replaced keeps an optimizer built for
    the old variables, and its next `fit` fails on "Unknown variable". The
    new optimizer has the old one's configuration (learning rate, schedule)
    and no state: the slots of the replaced variables have no counterpart.
    Uncompiled models are left alone.
    """
    if not getattr(model, "compiled", False) or getattr(model, "_compile_config", None) is None:
        return model
    config = dict(model._compile_config.config)
    optimizer = config.pop("optimizer", None)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = type(optimizer).from_config(optimizer.get_config())
    model.compile(optimizer=optimizer, **config)
    return model
