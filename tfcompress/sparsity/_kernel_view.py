"""Dense and EinsumDense kernels seen as (inputs, outputs) matrices.

One-shot pruning scores each weight against the input feature it multiplies,
so it needs to know which kernel axes are contracted with the layer's input.
For an `EinsumDense` that is read from the equation: the kernel letters that
appear in the input term and not in the output term are the input axes, the
kernel letters of the output term are the output axes. The largest dimension
says nothing (a query kernel `(hidden, heads, head_dim)` and an output kernel
`(heads, head_dim, hidden)` have the same sizes, on opposite sides).
"""

import numpy as np
from keras import layers, ops

from tfcompress.core._keras_internals import kernel_variable


class KernelView:
    """How to flatten one layer's kernel and inputs for pruning.

    Attributes:
        layer: the Dense or EinsumDense layer.
        num_inputs: length of the flattened input (reduction) axis.
        num_outputs: length of the flattened output axis.
    """

    def __init__(self, layer, kernel_order, input_letters, feature_letters):
        self.layer = layer
        self._order = kernel_order
        self._inverse = tuple(int(i) for i in np.argsort(kernel_order))
        self._input_letters = input_letters
        self._feature_letters = feature_letters
        shape = tuple(layer.kernel.shape)
        self._moved_shape = tuple(shape[i] for i in kernel_order)
        self.num_inputs = int(np.prod(self._moved_shape[: len(feature_letters)]))
        self.num_outputs = int(np.prod(shape)) // max(self.num_inputs, 1)

    def to_matrix(self, kernel):
        """`kernel` as a float32 `(num_inputs, num_outputs)` matrix."""
        moved = ops.transpose(ops.cast(kernel, "float32"), self._order)
        return ops.reshape(moved, (self.num_inputs, self.num_outputs))

    def from_matrix(self, matrix):
        """The inverse of `to_matrix`, in the kernel's shape."""
        moved = ops.reshape(matrix, self._moved_shape)
        return ops.transpose(moved, self._inverse)

    def input_rows(self, inputs):
        """The layer's input as `(rows, num_inputs)`, one row per product."""
        inputs = ops.cast(inputs, "float32")
        if self._input_letters is None:
            return ops.reshape(inputs, (-1, self.num_inputs))
        letters = list(self._input_letters)
        if "." in letters:
            at = letters.index(".")
            letters[at : at + 1] = [None] * (len(inputs.shape) - len(letters) + 1)
        features = [letters.index(c) for c in self._feature_letters]
        rows = [i for i in range(len(letters)) if i not in features]
        moved = ops.transpose(inputs, rows + features)
        return ops.reshape(moved, (-1, self.num_inputs))


def _einsum_view(layer):
    equation = layer.equation.replace(" ", "").replace("...", ".")
    operands, output = equation.split("->")
    source, kernel = operands.split(",")
    if "." in kernel:
        return None
    contracted = [c for c in kernel if c in source and c not in output]
    produced = [c for c in kernel if c in output]
    if (
        not contracted
        or len(contracted) + len(produced) != len(kernel)
        or any(c in source for c in produced)
    ):
        return None
    order = tuple(kernel.index(c) for c in contracted + produced)
    return KernelView(layer, order, source, contracted)


def kernel_view(layer):
    """The `KernelView` of `layer`, or None when it has none.

    Dense kernels are `(inputs, outputs)` already. EinsumDense equations of
    the form `input,kernel->output` qualify when every kernel axis is either
    contracted with the input or carried to the output (no kernel axis shared
    with the input and the output, which would be a batched product).

    Args:
        layer: any Keras layer.

    Returns:
        A `KernelView`, or None for other layers, unbuilt layers, layers
        whose kernel is not a float variable (quantized), LoRA layers and equations of
        other forms.
    """
    if not isinstance(layer, (layers.Dense, layers.EinsumDense)) or not layer.built:
        return None
    kernel = kernel_variable(layer)
    if kernel is None or "float" not in str(kernel.dtype) or getattr(layer, "lora_enabled", False):
        return None
    if isinstance(layer, layers.Dense):
        return KernelView(layer, (0, 1), None, "i")
    return _einsum_view(layer)
