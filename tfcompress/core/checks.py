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


def ensure_keras3_model(obj, arg_name="model"):
    """Raises unless `obj` is a Keras 3 `keras.Model`.

    Args:
        obj: the object to check.
        arg_name: the argument name used in the error message.

    Returns:
        `obj`, unchanged.

    Raises:
        TypeError: for tf_keras models and anything that is not a `keras.Model`.
    """
    if _is_legacy_keras(obj):
        raise TypeError(_legacy_message(arg_name, obj))
    if not isinstance(obj, keras.Model):
        raise TypeError(
            f"`{arg_name}` must be a `keras.Model` (Sequential, functional, "
            f"subclassed or keras-hub). Received: {arg_name}={obj!r} of type "
            f"{type(obj).__name__}."
        )
    return obj


def ensure_keras3_layer(obj, arg_name="layer"):
    """Raises unless `obj` is a Keras 3 `keras.layers.Layer` (models included).

    Args:
        obj: the object to check.
        arg_name: the argument name used in the error message.

    Returns:
        `obj`, unchanged.

    Raises:
        TypeError: for tf_keras layers and anything that is not a Keras layer.
    """
    if _is_legacy_keras(obj):
        raise TypeError(_legacy_message(arg_name, obj))
    if not isinstance(obj, keras.layers.Layer):
        raise TypeError(
            f"`{arg_name}` must be a Keras 3 `keras.layers.Layer` or "
            f"`keras.Model`. Received: {arg_name}={obj!r} of type "
            f"{type(obj).__name__}."
        )
    return obj


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
