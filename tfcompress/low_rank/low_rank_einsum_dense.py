"""An EinsumDense layer whose kernel is the product of two thinner kernels."""

import keras

from tfcompress.low_rank._base import LowRankLayer
from tfcompress.low_rank._kernel_spec import Equation


@keras.saving.register_keras_serializable(package="tfcompress")
class LowRankEinsumDense(LowRankLayer):
    """An EinsumDense computed through a rank-`rank` bottleneck.

    The kernel axes the equation contracts with the input form the rows of
    the matrix, those it writes to the output its columns: for the query
    projection `"abc,cde->abde"` the first factor is `"abc,cz->abz"` and the
    second `"abz,zde->abde"` (with the bias and activation); for the output
    projection `"abcd,cde->abe"` they are `"abcd,cdz->abz"` and
    `"abz,ze->abe"`. Made by `tfcompress.low_rank.factorize`.

    Args:
        equation: the replaced EinsumDense's equation.
        output_shape: its `output_shape` (without the batch axis).
        rank: inner size.
        bias_axes: its `bias_axes`.
        activation: its activation.
        weight_error: relative Frobenius error of the factors' product to
            the replaced kernel, when factorized (None when unknown).
        output_error: the same on the layer's outputs for the representative
            data, when factorized with data.
        **kwargs: base layer arguments (`name`, `dtype`).

    Raises:
        ValueError: when the equation's kernel is not one matrix (an axis
            both in the input and the output, or in neither).

    Example:

    ```python
    layer = tfcompress.low_rank.LowRankEinsumDense(
        "abc,cde->abde", output_shape=(None, 4, 16), rank=8, bias_axes="de")
    y = layer(keras.ops.ones((2, 5, 64)))  # (2, 5, 4, 16)
    ```
    """

    factor_class = keras.layers.EinsumDense

    def __init__(self, equation, output_shape, rank, bias_axes=None, activation=None, **kwargs):
        parsed = Equation(equation)
        if parsed.reason is not None:
            raise ValueError(
                f"`equation` cannot be factorized: {parsed.reason}. Received: equation={equation!r}"
            )
        self.equation = parsed.text
        self.factor_output_shape = (
            list(output_shape) if isinstance(output_shape, (list, tuple)) else [output_shape]
        )
        self.bias_axes = bias_axes
        self._parsed = parsed
        super().__init__(rank, activation=activation, **kwargs)

    def factor_arguments(self):
        first_equation, second_equation = self._parsed.factor_equations()
        first_shape = self._parsed.first_output_shape(self.factor_output_shape, self.rank)
        return {"equation": first_equation, "output_shape": first_shape}, {
            "equation": second_equation,
            "output_shape": self.factor_output_shape,
            "bias_axes": self.bias_axes,
        }

    @staticmethod
    def arguments_of(layer):
        return {
            "equation": layer.equation,
            "output_shape": list(layer.partial_output_shape),
            "bias_axes": layer.bias_axes,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "equation": self.equation,
                "output_shape": self.factor_output_shape,
                "bias_axes": self.bias_axes,
            }
        )
        return config
