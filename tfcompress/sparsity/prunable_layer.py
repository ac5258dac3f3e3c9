"""Interface for user layers that name their own prunable weights."""

import abc


class PrunableLayer(abc.ABC):
    """Mix into a custom layer to make `prune_low_magnitude` prune it.

    Same contract as TFMOT's `PrunableLayer`: return the variables to prune.

    Example:

    ```python
    class MyDense(keras.layers.Dense, tfcompress.sparsity.PrunableLayer):
        def get_prunable_weights(self):
            return [self.kernel]
    ```
    """

    @abc.abstractmethod
    def get_prunable_weights(self):
        """The list of variables whose values the pruning masks apply to."""
        raise NotImplementedError
