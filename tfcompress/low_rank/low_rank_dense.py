"""A Dense layer whose kernel is the product of two thinner kernels."""

import keras

from tfcompress.low_rank._base import LowRankLayer


@keras.saving.register_keras_serializable(package="tfcompress")
class LowRankDense(LowRankLayer):
    """`activation(x @ first @ second + bias)`: a Dense of rank `rank`.

    Holds an `(m, n)` kernel as `(m, rank)` and `(rank, n)` Dense sublayers
    (`first`, without bias, and `second`, with the bias and the activation),
    which is fewer numbers when `rank * (m + n) < m * n`. Made by
    `tfcompress.low_rank.factorize`; trainable like any Dense.

    Args:
        units: output size.
        rank: inner size.
        activation: as in `keras.layers.Dense`.
        use_bias: as in `keras.layers.Dense`.
        weight_error: relative Frobenius error of `first @ second` to the
            kernel it replaced, when factorized (None when unknown).
        output_error: the same on the layer's outputs for the representative
            data, when factorized with data.
        **kwargs: base layer arguments (`name`, `dtype`).

    Example:

    ```python
    layer = tfcompress.low_rank.LowRankDense(units=64, rank=8)
    y = layer(keras.ops.ones((2, 32)))
    ```
    """

    factor_class = keras.layers.Dense

    def __init__(self, units, rank, activation=None, use_bias=True, **kwargs):
        self.units = units
        self.use_bias = use_bias
        super().__init__(rank, activation=activation, **kwargs)

    def factor_arguments(self):
        return {"units": self.rank, "use_bias": False}, {
            "units": self.units,
            "use_bias": self.use_bias,
        }

    @staticmethod
    def arguments_of(layer):
        return {"units": layer.units, "use_bias": layer.use_bias}

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "use_bias": self.use_bias})
        return config
