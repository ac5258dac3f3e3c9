"""Copy a built model, keeping its class, including classes nobody registered."""

import inspect

import keras
import numpy as np

from tfcompress.core.checks import ensure_built
from tfcompress.core.layer_tree import layers_of, walk_layers
from tfcompress.core.recipe import plain_class


def _takes_no_config(cls):
    """Whether Keras's default `from_config` cannot rebuild `cls`.

    A class with Keras's own `get_config` and `from_config` whose `__init__`
    has no `**kwargs` (`def __init__(self): super().__init__()`, the way
    many users write a model) saves `trainable` and `dtype`, which `cls(**config)`
    then refuses.
    """
    base = keras.Model if issubclass(cls, keras.Model) else keras.layers.Layer
    if cls.get_config is not base.get_config or cls.from_config.__func__ is not (
        base.from_config.__func__
    ):
        return False
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _constructor(cls):
    """Stands for `cls` at deserialization: calls it with the arguments it takes."""
    accepted = set(inspect.signature(cls.__init__).parameters)

    class Constructor:
        @classmethod
        def from_config(cls_, config):
            instance = cls(**{k: v for k, v in config.items() if k in accepted})
            instance.trainable = config.get("trainable", instance.trainable)
            return instance

    return Constructor


def _classes_in(model):
    """`{registered name: class}` of the model and its layers, where unambiguous.

    A class defined in a script or test is not registered, so Keras cannot
    find it by name; it is right here, in the model being copied. A class
    whose `__init__` cannot take its own default config is called with the
    arguments it takes (the copy's outputs are checked afterwards).
    """
    found = {}
    for layer in layers_of(model):
        cls = plain_class(layer)
        found.setdefault(keras.saving.get_registered_name(cls), set()).add(cls)
    classes = {}
    for name, candidates in found.items():
        if len(candidates) == 1:
            (cls,) = candidates
            classes[name] = _constructor(cls) if _takes_no_config(cls) else cls
    return classes


def _generated_input(model):
    """A batch of two inputs of the model's recorded shapes, or None if unknown.

    Integer inputs (token ids, masks) get 0s and 1s, valid for any vocabulary.
    """
    rng = np.random.default_rng(0)

    def make(shape, dtype):
        shape = (2,) + tuple(8 if d is None else d for d in tuple(shape)[1:])
        if np.issubdtype(np.dtype(dtype), np.integer) or dtype == "bool":
            return rng.integers(0, 2, size=shape).astype(dtype)
        return rng.random(shape).astype("float32")

    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if structure is not None:
        return keras.tree.map_structure(lambda t: make(t.shape, t.dtype), structure)
    shape = (model.get_build_config() or {}).get("input_shape")
    if (
        isinstance(shape, (list, tuple))
        and shape
        and all(isinstance(s, (list, tuple)) for s in shape)
    ):
        return [make(s, "float32") for s in shape]
    if isinstance(shape, (list, tuple)) and all(d is None or isinstance(d, int) for d in shape):
        return make(shape, "float32")
    return None


def _copy_error(model, reason):
    return TypeError(
        f"Could not copy model {model.name!r} ({type(model).__name__}): "
        f"{reason}. Either register the class with "
        "`@keras.saving.register_keras_serializable()` and give it a "
        "`get_config` covering its `__init__` arguments, or pass "
        "`inplace=True` to transform the model itself."
    )


def _failed(model, error):
    """The copy error for a failed rebuild; Keras's full message stays chained."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 300:  # Keras appends whole configs
        text = text[:300] + "..."
    return _copy_error(model, f"rebuilding it from its config failed ({text})")


def _rebuild(model, custom_objects):
    # The config comes from a live model of this process, not from a file, so
    # the `Lambda` functions it holds are the user's own: safe mode (meant for
    # untrusted archives) would only refuse them.
    with keras.saving.custom_object_scope(custom_objects):
        copy = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(model), safe_mode=False
        )
        if not copy.built:
            build_config = model.get_build_config()
            if build_config:
                copy.build_from_config(build_config)
    return copy


def _check_outputs(model, copy):
    inputs = _generated_input(model)
    if inputs is None:
        raise _copy_error(
            model,
            "its class is not registered, and without a known input shape the "
            "copy rebuilt from its config cannot be checked against it",
        )
    outputs = keras.tree.flatten(model(inputs, training=False))
    copied = keras.tree.flatten(copy(inputs, training=False))
    same = len(outputs) == len(copied) and all(
        np.allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        for a, b in zip(outputs, copied)
    )
    if not same:
        raise _copy_error(
            model,
            "its class is not registered, and the copy rebuilt from its config "
            "computes different outputs (some state of the model is in neither "
            "its config nor its weights)",
        )


def _keep_layer_names(model, copy):
    """Gives the copy's layers the original's names, so paths stay valid.

    Layers a subclassed model creates without a name get the next free one
    (`dense_6` in the copy for the original's `dense`); every technique that
    finds layers by path in the copy needs the original's.
    """
    pairs = list(zip(walk_layers(model), walk_layers(copy)))
    if any(type(a.layer) is not type(b.layer) for a, b in pairs):
        return
    for original, copied in pairs:
        copied.layer.name = original.layer.name


def copy_model(model):
    """An independent copy of `model` with the same class, config and weights.

    Unlike `keras.models.clone_model`, the copy keeps the model's class (a
    keras-hub `BertBackbone` stays one), its nested layers and its
    compression wrappers. Classes that are not registered with Keras (a
    `keras.Model` subclass defined in a script) are rebuilt from their config
    too, with the classes found in the model itself; the copy's outputs are
    then checked equal to the model's on a generated batch.

    Args:
        model: a built Keras 3 model.

    Returns:
        The copy, with new variables holding the same values.

    Raises:
        TypeError: when the model cannot be rebuilt from its config, or the
            rebuilt model differs (in weights or, for unregistered classes,
            in outputs). The message names both fixes: register the class,
            or pass `inplace=True`.

    Example:

    ```python
    copy = tfcompress.core.copy_model(backbone)  # still a BertBackbone
    ```
    """
    ensure_built(model)
    try:
        copy, own_classes = _rebuild(model, {}), False
    except Exception:
        # Most often a class Keras cannot find by name (defined in a script,
        # not registered); the model itself holds it.
        try:
            copy, own_classes = _rebuild(model, _classes_in(model)), True
        except Exception as error:
            raise _failed(model, error) from error
    source, target = model.weights, copy.weights
    if [w.shape for w in source] != [w.shape for w in target]:
        raise _copy_error(
            model,
            f"the copy rebuilt from its config does not have the original's "
            f"weights ({len(target)} vs {len(source)}, or different shapes)",
        )
    copy.set_weights([w.numpy() for w in source])
    _keep_layer_names(model, copy)
    if own_classes:
        _check_outputs(model, copy)
    return copy
