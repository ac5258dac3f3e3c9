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

    def __init__(self, units, rank, activation=None, use_bias=True, **kwargs):
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        super().__init__(rank, **kwargs)

    def _factor_layers(self):
        first = keras.layers.Dense(self.rank, use_bias=False, dtype=self.dtype_policy, name="first")
        second = keras.layers.Dense(
            self.units,
            activation=self.activation,
            use_bias=self.use_bias,
            dtype=self.dtype_policy,
            name="second",
        )
        return first, second

    @staticmethod
    def config_of(layer, rank):
        """The arguments that make a LowRankDense replace the Dense `layer`."""
        return {
            "units": layer.units,
            "rank": int(rank),
            "activation": layer.activation,
            "use_bias": layer.use_bias,
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
            }
        )
        return config
