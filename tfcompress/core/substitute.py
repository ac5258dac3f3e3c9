"""Run layers with some variables replaced by computed tensors."""

import contextlib

import keras

from tfcompress.core import _keras_internals as internals


@contextlib.contextmanager
def substitute_variables(mapping, tracked_variables=()):
    """Reads of each variable in `mapping` return the mapped tensor instead.

    Used by every tfcompress wrapper: the wrapped layer's own `call` runs
    unchanged while its kernel reads as, e.g., `kernel * mask` or
    `fake_quant(kernel)`. Gradients flow through the mapped tensor to the real
    variable. Assignments made inside the block to `tracked_variables` (e.g. a
    BatchNormalization's moving statistics) are applied when the block exits,
    so wrapping a stateful layer loses no updates.

    Args:
        mapping: a list of `(variable, tensor)` pairs (or a dict from
            variable to tensor). Tensors must have the variable's shape.
        tracked_variables: variables whose in-block assignments must persist.

    Yields:
        None.

    Raises:
        TypeError: when a key of `mapping` is not a `keras.Variable`.

    Example:

    ```python
    with tfcompress.core.substitute_variables(
            [(dense.kernel, dense.kernel * mask)]):
        outputs = dense(inputs)
    ```
    """
    pairs = list(mapping.items()) if isinstance(mapping, dict) else list(mapping)
    for variable, _ in pairs:
        if not isinstance(variable, keras.Variable):
            raise TypeError(
                "`mapping` must pair `keras.Variable`s with tensors. Received "
                f"a key {variable!r} of type {type(variable).__name__}; pass "
                "the variable itself, e.g. `(layer.kernel, tensor)`."
            )
    # Keras exposes the scope class but not the getter; nesting needs both.
    outer = internals.current_stateless_scope()
    scope = keras.StatelessScope(state_mapping=pairs)
    if outer is not None:
        # An outer stateless scope (JAX training, symbolic tracing) holds the
        # current values of every other variable; keep them visible.
        for key, value in outer.state_mapping.items():
            scope.state_mapping.setdefault(key, value)
    substituted = {id(variable) for variable, _ in pairs}
    before = {id(v): scope.state_mapping.get(id(v)) for v in tracked_variables}
    with scope:
        yield
    for variable in tracked_variables:
        if id(variable) in substituted:
            continue
        value = scope.state_mapping.get(id(variable))
        if value is None or value is before[id(variable)]:
            continue
        if outer is not None:
            outer.add_update((variable, value))
        else:
            variable.assign(value)
