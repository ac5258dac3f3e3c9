"""`strip_pruning`: remove the pruning wrappers, keeping the zeros."""

from tfcompress.core.checks import ensure_keras3_layer
from tfcompress.core.transform import transform_layers
from tfcompress.sparsity.pruning_wrapper import PruneLowMagnitude


def strip_pruning(model, inplace=False):
    """Returns `model` with every `PruneLowMagnitude` replaced by its layer.

    Masks are multiplied into the kernels first, so the result computes what
    the pruned model computes, has no pruning variables, keeps the model's
    class, and saves and loads as a plain Keras model.

    Args:
        model: a model from `prune_low_magnitude` (or a single wrapper).
        inplace: strip `model` itself instead of a copy.

    Returns:
        The stripped model (or layer).

    Raises:
        TypeError: for anything that is not a Keras 3 layer or model.

    Example:

    ```python
    final = tfcompress.sparsity.strip_pruning(pruned)
    final.save("pruned.keras")  # loads with keras.saving.load_model
    ```
    """
    ensure_keras3_layer(model, "model")
    if isinstance(model, PruneLowMagnitude):
        return model.stripped_layer()

    def transform(ref):
        if isinstance(ref.layer, PruneLowMagnitude):
            return ref.layer.stripped_layer()
        return None

    stripped, _ = transform_layers(model, transform, inplace=inplace)
    if hasattr(stripped, "tfcompress_skipped"):
        del stripped.tfcompress_skipped
    return stripped
