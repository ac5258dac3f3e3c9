"""Replace the layers a function picks, in a model or a copy of it."""

from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.copy_model import copy_model
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.recipe import (
    attach_recipe,
    detach_recipe,
    has_recipe,
    needs_recipe,
    records_anything,
)
from tfcompress.core.replacements import record_replacement
from tfcompress.core.swap import swap_layer
from tfcompress.core.wrapper import CompressionWrapper


def is_wrapper(layer):
    return isinstance(layer, CompressionWrapper)


def transform_layers(model, transform_fn, inplace=False):
    """Replaces layers of `model` chosen by `transform_fn`.

    Walks every layer (keras-hub blocks, nested and subclassed models
    included), parents first, without entering tfcompress wrappers. For each,
    `transform_fn(ref)` returns a built replacement layer, or None to keep it;
    replaced layers are not descended into. A replacement that is neither a
    wrapper nor a stripped wrapper's inner layer is recorded as in
    `tfcompress.core.replace_layer`, so the model saves and copies with it.

    Args:
        model: a built Keras 3 model.
        transform_fn: `fn(LayerRef) -> keras.layers.Layer | None`.
        inplace: transform `model` itself instead of a copy.

    Returns:
        `(model, replaced)`: the transformed model (same class as the input)
        and the list of `LayerRef`s that were replaced (paths are those of the
        original layers).

    Raises:
        TypeError: for tf_keras or non-model inputs, or a model that cannot
            be copied (register its class, or pass `inplace=True`).
        ValueError: when the model is not built.

    Example:

    ```python
    def wrap_dense(ref):
        if isinstance(ref.layer, keras.layers.Dense):
            return MyWrapper(ref.layer)  # built
        return None

    model, replaced = tfcompress.core.transform_layers(model, wrap_dense)
    ```
    """
    ensure_keras3_model(model, "model")
    ensure_built(model)
    if not inplace:
        model = copy_model(model)
    replaced = []
    for ref in walk_layers(model, descend=lambda layer: not is_wrapper(layer)):
        if any(ref.path.startswith(done.path + "/") for done in replaced):
            continue
        new = transform_fn(ref)
        if new is None or new is ref.layer:
            continue
        swap_layer(ref.parent, ref.layer, new)
        record_replacement(ref.layer, new)
        replaced.append(ref)
    if replaced and needs_recipe(model, replaced):
        attach_recipe(model)
    if has_recipe(model) and not records_anything(model):
        # e.g. stripped: nothing is left for the config to record.
        detach_recipe(model)
    return model, replaced
