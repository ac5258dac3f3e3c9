"""Remove the compression wrappers of any technique from a model."""

from tfcompress.core.checks import ensure_keras3_layer
from tfcompress.core.layer_tree import layers_of
from tfcompress.core.transform import transform_layers
from tfcompress.core.wrapper import CompressionWrapper


def _strippable(layer, keep_learned_ranges):
    return isinstance(layer, CompressionWrapper) and not (
        keep_learned_ranges and layer.carries_learned_ranges
    )


def _strip(layer, keep_learned_ranges):
    while _strippable(layer, keep_learned_ranges):
        layer = layer.strip()
    return layer


def has_strippable_wrappers(model, keep_learned_ranges=True):
    """Whether `strip_wrappers(model, keep_learned_ranges=...)` would remove a wrapper."""
    layers = layers_of(model)
    return any(_strippable(layer, keep_learned_ranges) for layer in layers)


def strip_wrappers(model, inplace=False, keep_learned_ranges=True):
    """Returns `model` with its `CompressionWrapper`s replaced by `wrapper.strip()`.

    Works for every technique, including ones defined outside tfcompress:
    each wrapper's `strip()` says what its layer becomes (pruning bakes the
    masks into the kernels). Wrappers whose class sets
    `carries_learned_ranges` (quantization-aware training) are kept, since
    the export reads their ranges, unless `keep_learned_ranges=False`.

    Args:
        model: a Keras 3 model (or a single wrapper).
        inplace: strip `model` itself instead of a copy.
        keep_learned_ranges: keep wrappers that carry learned ranges.

    Returns:
        The stripped model (same class, its own class back once no wrapper
        is left), or the stripped layer.

    Raises:
        TypeError: for anything that is not a Keras 3 layer or model, or a
            model that cannot be copied (register its class, or pass
            `inplace=True`).

    Example:

    ```python
    final = tfcompress.core.strip_wrappers(pruned)
    ```
    """
    ensure_keras3_layer(model, "model")
    if isinstance(model, CompressionWrapper):
        return _strip(model, keep_learned_ranges)

    def transform(ref):
        if _strippable(ref.layer, keep_learned_ranges):
            return _strip(ref.layer, keep_learned_ranges)
        return None

    return transform_layers(model, transform, inplace=inplace)[0]
