"""Input validation shared by every tfcompress entry point."""

import keras


def _is_legacy_keras(obj):
    """True for objects from `tf_keras` / Keras 2 (`tf.keras` under legacy mode)."""
    for klass in type(obj).__mro__:
        module = getattr(klass, "__module__", "") or ""
        if module.startswith(
            ("tf_keras", "keras.engine", "keras.src.engine", "tensorflow.python.keras")
        ):
            return True
    return False


def _legacy_message(arg_name, obj):
    return (
        f"`{arg_name}` must be a Keras 3 object; received a `tf_keras` "
        f"(Keras 2) {type(obj).__name__}. tfcompress works on Keras 3 models: "
        "build the model with `import keras` (not `tf_keras` or "
        "`tf.keras` with TF_USE_LEGACY_KERAS=1)."
    )


def _ensure(obj, arg_name, cls, expected):
    if _is_legacy_keras(obj):
        raise TypeError(_legacy_message(arg_name, obj))
    if not isinstance(obj, cls):
        raise TypeError(
            f"`{arg_name}` must be {expected}. Received: {arg_name}={obj!r} of "
            f"type {type(obj).__name__}."
        )
    return obj


def ensure_keras3_model(obj, arg_name="model"):
    """Returns `obj` if it is a Keras 3 `keras.Model`.

    Raises:
        TypeError: naming `arg_name`, for tf_keras models (with how to fix)
            and for anything that is not a `keras.Model`.
    """
    return _ensure(
        obj, arg_name, keras.Model,
        "a `keras.Model` (Sequential, functional, subclassed or keras-hub)",
    )


def ensure_keras3_layer(obj, arg_name="layer"):
    """Returns `obj` if it is a Keras 3 layer (models included).

    Raises:
        TypeError: naming `arg_name`, for tf_keras layers (with how to fix)
            and for anything that is not a Keras layer.
    """
    return _ensure(
        obj, arg_name, keras.layers.Layer,
        "a Keras 3 `keras.layers.Layer` or `keras.Model`",
    )


def ensure_built(layer, arg_name="model"):
    """Raises unless `layer` has been built (its variables exist).

    Raises:
        ValueError: when `layer.built` is False.
    """
    if not layer.built:
        raise ValueError(
            f"`{arg_name}` ({layer.name!r}) is not built, so its weights do not "
            "exist yet. Build it first, e.g. call it on a batch of inputs or "
            "give the model a `keras.Input`."
        )
    return layer
