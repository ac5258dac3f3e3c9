"""What the two factorized layers share: two factor sublayers and metadata."""

import keras

from tfcompress.core.checks import check_int
from tfcompress.core.wrapper import build_shape_of


class LowRankLayer(keras.layers.Layer):
    """A kernel held as two factor layers, `first` (no bias) then `second`.

    The factors are ordinary Dense/EinsumDense sublayers, so pruning, QAT and
    the TFLite converter see two plain matmuls (two FULLY_CONNECTED ops).
    """

    # The class of both factors; subclasses set it.
    factor_class = None

    def __init__(self, rank, activation=None, weight_error=None, output_error=None, **kwargs):
        super().__init__(**kwargs)
        self.rank = check_int(rank, "rank", 1, expected="an int >= 1")
        self.activation = keras.activations.get(activation)
        self.weight_error = weight_error
        self.output_error = output_error
        first, second = self.factor_arguments()
        self.first = self.factor_class(**first, dtype=self.dtype_policy, name="first")
        self.second = self.factor_class(
            **second, activation=self.activation, dtype=self.dtype_policy, name="second"
        )

    def factor_arguments(self):
        """The arguments of `first` and `second` (two dicts) besides dtype and name."""
        raise NotImplementedError

    @staticmethod
    def arguments_of(layer):
        """The arguments that keep `layer`'s shape and bias (all but rank, activation)."""
        raise NotImplementedError

    @classmethod
    def config_of(cls, layer, rank):
        """The arguments that make a layer of this class, of rank `rank`, replace `layer`."""
        return {**cls.arguments_of(layer), "rank": int(rank), "activation": layer.activation}

    def build(self, input_shape):
        self.first.build(input_shape)
        self.second.build(self.first.compute_output_shape(input_shape))
        self.built = True

    def call(self, inputs):
        return self.second(self.first(inputs))

    def compute_output_shape(self, input_shape):
        return self.second.compute_output_shape(self.first.compute_output_shape(input_shape))

    @classmethod
    def from_layer(cls, layer, first, second, **metadata):
        """A built layer replacing `layer`, with the factor kernels given.

        Args:
            layer: the Dense/EinsumDense being replaced (its name, dtype
                policy, activation and bias are kept).
            first: the first factor's kernel (numpy, float64 is cast).
            second: the second factor's kernel.
            **metadata: `weight_error`, `output_error`.

        Returns:
            The built layer.
        """
        config = cls.config_of(layer, first.shape[-1])
        new = cls(name=layer.name, dtype=layer.dtype_policy, **config, **metadata)
        new.build(build_shape_of(layer))
        new.first.kernel.assign(first.astype(new.first.kernel.dtype))
        new.second.kernel.assign(second.astype(new.second.kernel.dtype))
        if getattr(layer, "bias", None) is not None:
            new.second.bias.assign(layer.bias)
        return new

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rank": self.rank,
                "activation": keras.activations.serialize(self.activation),
                "weight_error": self.weight_error,
                "output_error": self.output_error,
            }
        )
        return config
