"""How a Dense or EinsumDense kernel reads as one (inputs x outputs) matrix."""

import math

import keras
import numpy as np
from keras import ops

_ELLIPSIS = "0"


def _tokens(part):
    return list(part.replace("...", _ELLIPSIS))


def _text(tokens):
    return "".join(tokens).replace(_ELLIPSIS, "...")


class Equation:
    """An EinsumDense equation split into its input and output kernel axes.

    The equation says which kernel axes meet the input (summed over: the
    matrix rows) and which reach the output (the columns), so attention
    projections with 3-D kernels such as `(hidden, heads, head_dim)` need no
    guess from shapes. A kernel with an axis in both the input and the
    output (batched) or in neither is not one matrix: `reason` says so.

    Attributes:
        reason: None when the kernel is one matrix, else why not.
    """

    def __init__(self, equation):
        self.text = equation.replace(" ", "")
        self.reason = None
        inputs, output = self.text.split("->")
        source, kernel = inputs.split(",")
        source, kernel, output = _tokens(source), _tokens(kernel), _tokens(output)
        self.source, self.kernel, self.output = source, kernel, output
        self.contracted = [t for t in kernel if t in source and t not in output]
        self.produced = [t for t in kernel if t in output and t not in source]
        self.free = [t for t in source if t not in kernel]
        if _ELLIPSIS in kernel or len(self.contracted) + len(self.produced) != len(kernel):
            self.reason = f"its kernel in {self.text!r} has batched or summed-out axes"
        elif not self.contracted or not self.produced:
            self.reason = f"its kernel in {self.text!r} has no input or no output axis"
        elif _ELLIPSIS in source[1:] or _ELLIPSIS in output[1:]:
            self.reason = f"{self.text!r} has an ellipsis that is not leading"
        elif any(t not in output for t in self.free):
            self.reason = f"{self.text!r} sums over an input axis the kernel lacks"

    def factor_equations(self):
        """`(first, second)` equations through a new rank axis."""
        used = set(self.text)
        r = [next(c for c in "zyxwvutsrqponmlkjihgfedcba" if c not in used)]
        free = self.free
        first = f"{_text(self.source)},{_text(self.contracted + r)}->{_text(free + r)}"
        second = f"{_text(free + r)},{_text(r + self.produced)}->{_text(self.output)}"
        return first, second

    def first_output_shape(self, output_shape, rank):
        """The first factor's `output_shape` (without the batch axis, as EinsumDense takes it)."""
        explicit = [t for t in self.output if t != _ELLIPSIS]
        skip_batch = _ELLIPSIS not in self.output
        dims = dict(zip(explicit[1:] if skip_batch else explicit, output_shape))
        kept = [t for t in self.free if t != _ELLIPSIS]
        kept = kept[1:] if skip_batch else kept
        return [dims[t] for t in kept] + [rank]


class KernelSpec:
    """The matrix view of a Dense/EinsumDense kernel and of its inputs.

    Attributes:
        layer: the layer.
        reason: None when factorizable, else why not.
        shape: `(m, n)` of the matrix (when factorizable).
    """

    def __init__(self, layer):
        self.layer = layer
        kernel_shape = tuple(layer.kernel.shape)
        self.equation = None
        self.reason = None
        if isinstance(layer, keras.layers.EinsumDense):
            self.equation = eq = Equation(layer.equation)
            self.reason = eq.reason
            if self.reason is not None:
                return
            self._perm = [eq.kernel.index(t) for t in eq.contracted + eq.produced]
            self.in_dims = tuple(kernel_shape[eq.kernel.index(t)] for t in eq.contracted)
            self.out_dims = tuple(kernel_shape[eq.kernel.index(t)] for t in eq.produced)
        else:
            self._perm = [0, 1]
            self.in_dims, self.out_dims = (kernel_shape[0],), (kernel_shape[1],)
        self.shape = (math.prod(self.in_dims), math.prod(self.out_dims))

    def matrix(self, kernel):
        """The kernel as an `(m, n)` float64 numpy matrix."""
        kernel = np.asarray(kernel, dtype="float64")
        return np.transpose(kernel, self._perm).reshape(self.shape)

    def input_rows(self, inputs):
        """The layer's input as a `(rows, m)` tensor of its own dtype."""
        ndim = len(inputs.shape)
        if self.equation is None:
            return ops.reshape(inputs, (-1, self.shape[0]))
        explicit = [t for t in self.equation.source if t != _ELLIPSIS]
        offset = ndim - len(explicit)
        position = {t: offset + i for i, t in enumerate(explicit)}
        rows = [position[t] for t in self.equation.contracted]
        others = [axis for axis in range(ndim) if axis not in rows]
        return ops.reshape(ops.transpose(inputs, others + rows), (-1, self.shape[0]))

    def factor_kernels(self, first, second):
        """The factors shaped as the kernels of the two factor layers."""
        rank = first.shape[1]
        return first.reshape(self.in_dims + (rank,)), second.reshape((rank,) + self.out_dims)
