"""Copy a model (keeping its class) and replace the layers a function picks."""

import keras

from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.recipe import (
    apply_recipe,
    attach_recipe,
    has_recipe,
    needs_recipe,
    wrapper_recipe,
)
from tfcompress.core.replace import replace_layer
from tfcompress.core.wrapper import CompressionWrapper


def copy_model(model):
    """An independent copy of `model` with the same class, config and weights.

    Unlike `keras.models.clone_model`, the copy keeps the model's class (a
    keras-hub `BertBackbone` stays one) and its nested layers.

    Raises:
        TypeError: when the model cannot be rebuilt from its config.

    Example:

    ```python
    copy = tfcompress.core.copy_model(backbone)  # still a BertBackbone
    ```
    """
    ensure_built(model)
    try:
        copy = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(model)
        )
        if not copy.built:
            build_config = model.get_build_config()
            if build_config:
                copy.build_from_config(build_config)
        if has_recipe(model):
            # Wrappers inside layers rebuilt from hyperparameters.
            apply_recipe(copy, wrapper_recipe(model))
    except Exception as error:  # any config failure gets the same advice
        raise TypeError(
            f"Could not copy model {model.name!r} ({type(model).__name__}) "
            f"through its config: {error}. Implement `get_config` (and register "
            "the class with `keras.saving.register_keras_serializable`), or "
            "pass `inplace=True` to transform the model itself."
        ) from error
    source, target = model.weights, copy.weights
    if [w.shape for w in source] != [w.shape for w in target]:
        raise TypeError(
            f"The copy of model {model.name!r} does not have the original's "
            f"weights ({len(target)} vs {len(source)}, or different shapes): "
            "its config does not rebuild every layer. "
            "Pass `inplace=True` to transform the model itself."
        )
    copy.set_weights([w.numpy() for w in source])
    return copy


def is_wrapper(layer):
    return isinstance(layer, CompressionWrapper)


def transform_layers(model, transform_fn, inplace=False):
    """Replaces layers of `model` chosen by `transform_fn`.

    Walks every layer (keras-hub blocks, nested and subclassed models
    included), parents first, without entering tfcompress wrappers. For each,
    `transform_fn(ref)` returns a built replacement layer, or None to keep it;
    replaced layers are not descended into.

    Args:
        model: a built Keras 3 model.
        transform_fn: `fn(LayerRef) -> keras.layers.Layer | None`.
        inplace: transform `model` itself instead of a copy.

    Returns:
        `(model, replaced)`: the transformed model (same class as the input)
        and the list of `LayerRef`s that were replaced (paths are those of the
        original layers).

    Raises:
        TypeError: for tf_keras or non-model inputs, or a model that cannot
            be copied (pass `inplace=True`).
        ValueError: when the model is not built.

    Example:

    ```python
    def wrap_dense(ref):
        if isinstance(ref.layer, keras.layers.Dense):
            return MyWrapper(ref.layer)  # built
        return None

    model, replaced = tfcompress.core.transform_layers(model, wrap_dense)
    ```
    """
    ensure_keras3_model(model, "model")
    ensure_built(model)
    if not inplace:
        model = copy_model(model)
    replaced = []
    for ref in walk_layers(model, descend=lambda layer: not is_wrapper(layer)):
        if any(ref.path.startswith(done.path + "/") for done in replaced):
            continue
        new = transform_fn(ref)
        if new is None or new is ref.layer:
            continue
        replace_layer(ref.parent, ref.layer, new)
        replaced.append(ref)
    if replaced and needs_recipe(model, replaced):
        attach_recipe(model)
    return model, replaced
