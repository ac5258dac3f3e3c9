"""Input validation shared by every tfcompress entry point."""

import math
import numbers

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
        obj,
        arg_name,
        keras.Model,
        "a `keras.Model` (Sequential, functional, subclassed or keras-hub)",
    )


def ensure_keras3_layer(obj, arg_name="layer"):
    """Returns `obj` if it is a Keras 3 layer (models included).

    Raises:
        TypeError: naming `arg_name`, for tf_keras layers (with how to fix)
            and for anything that is not a Keras layer.
    """
    return _ensure(
        obj,
        arg_name,
        keras.layers.Layer,
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


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type.

    A `TypeError`, and a `ValueError` too: entry points that always raised
    `ValueError` for a bad argument keep doing so for a wrong type.
    """


def is_int(value):
    """Whether `value` is an integer (Python or numpy), `bool` excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _bounds(minimum, maximum, open_low=False, open_high=False):
    """`>= 1`, `> 0`, `<= 8` or `in [1, 4]` / `in [0, 1)`."""
    if minimum is not None and maximum is not None:
        return f"in {'(' if open_low else '['}{minimum}, {maximum}{')' if open_high else ']'}"
    if minimum is not None:
        return f"{'>' if open_low else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if open_high else '<='} {maximum}"
    return ""


def _received(value, wrong_type, own_wording):
    """How the message shows the value: the caller's wording shows `repr` alone."""
    if own_wording:
        return repr(value)
    return f"{value!r} of type {type(value).__name__}" if wrong_type else str(value)


def _fail(error, expected, name, received, hint, label):
    message = f"{label or f'`{name}`'} must be {expected}. Received: {name}={received}."
    raise error(message + (f" {hint}" if hint else ""))


def check_int(
    value, name, minimum=None, maximum=None, *, allow_none=False, expected=None, hint="", label=None
):
    """Returns `value` as a Python int if it is an integer in range.

    numpy integers are accepted, `bool` is not.

    Args:
        value: the argument to check.
        name: the argument's name, for the message.
        minimum: smallest allowed value (inclusive), or None.
        maximum: largest allowed value (inclusive), or None.
        allow_none: return None for None instead of raising.
        expected: what the message says the argument must be (e.g. "an int
            >= 1 (runs per model)"), for both failures; by default "an
            integer" for a wrong type and the range for a value out of it.
        hint: a sentence appended to the message (how to fix it).
        label: what the message starts with instead of "`name`".

    Returns:
        `int(value)`, or None.

    Raises:
        ArgumentTypeError: (a TypeError and a ValueError) for non-integers.
        ValueError: for integers out of range.

    Example:

    ```python
    runs = tfcompress.core.checks.check_int(runs, "runs", minimum=1)
    ```
    """
    if value is None and allow_none:
        return None
    own = expected is not None
    if not is_int(value):
        received = _received(value, True, own)
        _fail(ArgumentTypeError, expected or "an integer", name, received, hint, label)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        received = _received(value, False, own)
        _fail(ValueError, expected or _bounds(minimum, maximum), name, received, hint, label)
    return int(value)


def check_number(
    value,
    name,
    minimum=None,
    maximum=None,
    *,
    open_low=False,
    open_high=False,
    allow_none=False,
    expected=None,
    hint="",
    label=None,
):
    """Returns `value` as a float if it is a finite real number in range.

    Args:
        value, name, allow_none, expected, hint, label: as in `check_int`.
        minimum: lower bound, or None.
        maximum: upper bound, or None.
        open_low: exclude `minimum` itself (`> 0` rather than `>= 0`).
        open_high: exclude `maximum` itself.

    Returns:
        `float(value)`, or None.

    Raises:
        ArgumentTypeError: for `bool` and non-numbers.
        ValueError: for numbers out of range, NaN or infinite.

    Example:

    ```python
    temperature = check_number(temperature, "temperature", 0, open_low=True)
    ```
    """
    if value is None and allow_none:
        return None
    bounds = _bounds(minimum, maximum, open_low, open_high)
    own = expected is not None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        kind = "a positive number" if bounds == "> 0" else f"a number {bounds}".rstrip()
        received = _received(value, True, own)
        _fail(ArgumentTypeError, expected or kind, name, received, hint, label)
    out = not math.isfinite(value)
    out = out or (minimum is not None and (value <= minimum if open_low else value < minimum))
    out = out or (maximum is not None and (value >= maximum if open_high else value > maximum))
    if out:
        received = _received(value, False, own)
        _fail(ValueError, expected or bounds or "finite", name, received, hint, label)
    return float(value)


def check_fraction(
    value, name, *, include_one=False, allow_none=False, expected=None, hint="", label=None
):
    """Returns `value` as a float in [0, 1) (or [0, 1] with `include_one`).

    Args:
        value, name, allow_none, expected, hint, label: as in `check_int`.
        include_one: accept 1 itself (a weight), not only fractions below it
            (a sparsity).

    Returns:
        `float(value)`, or None.

    Raises:
        ArgumentTypeError: for `bool` and non-numbers.
        ValueError: outside the interval.

    Example:

    ```python
    sparsity = check_fraction(sparsity, "target_sparsity")
    ```
    """
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) or (value is None and allow_none)
    ):
        kind = expected or f"a float {_bounds(0, 1, open_high=not include_one)}"
        _fail(
            ArgumentTypeError, kind, name, _received(value, True, expected is not None), hint, label
        )
    return check_number(
        value,
        name,
        0,
        1,
        open_high=not include_one,
        allow_none=allow_none,
        expected=expected,
        hint=hint,
        label=label,
    )


def check_pair(value, name, minimum=None, *, allow_none=False, expected=None, hint="", label=None):
    """Returns `value` as a tuple of two Python ints, each >= `minimum`.

    Args:
        value, name, allow_none, hint, label: as in `check_int`.
        minimum: smallest allowed element, or None.
        expected: what the message says the pair must be; by default "a pair
            of integers >= minimum".

    Returns:
        `(int, int)`, or None.

    Raises:
        ValueError: (an `ArgumentTypeError` when it is no pair of integers)
            naming the argument and what was received.

    Example:

    ```python
    rows, cols = check_pair(block_size, "block_size", minimum=1)
    ```
    """
    if value is None and allow_none:
        return None
    if expected is None:
        expected = "a pair of integers" + (f" >= {minimum}" if minimum is not None else "")
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(map(is_int, value)):
        _fail(ArgumentTypeError, expected, name, repr(value), hint, label)
    if minimum is not None and min(value) < minimum:
        _fail(ValueError, expected, name, repr(value), hint, label)
    return int(value[0]), int(value[1])
