"""`prune_low_magnitude`: wrap the prunable layers of a layer or model."""

import logging

import keras

from tfcompress.core.checks import ensure_keras3_layer
from tfcompress.core.layer_tree import child_layers
from tfcompress.core.transform import transform_layers
from tfcompress.core.wrapper import build_shape_of
from tfcompress.sparsity.prune_registry import SUPPORTED, is_prunable
from tfcompress.sparsity.pruning_callbacks import pruning_wrappers
from tfcompress.sparsity.pruning_wrapper import PruneLowMagnitude, check_arguments

_LOG = logging.getLogger("tfcompress")


def _wrap(layer, wrapper_kwargs):
    wrapper = PruneLowMagnitude(layer, **wrapper_kwargs)
    if layer.built:
        wrapper.build(build_shape_of(layer))
    return wrapper


def _is_leaf(layer):
    return layer.trainable_weights and not child_layers(layer)


def _check_layer(layer, prune_embeddings):
    if isinstance(layer, PruneLowMagnitude):
        raise ValueError(
            f"`to_prune` layer {layer.name!r} is already pruned. Pass the "
            "layer it wraps (`.layer`) instead."
        )
    if not is_prunable(layer, prune_embeddings):
        hint = (
            " Pass prune_embeddings=True to prune embedding tables."
            if not prune_embeddings and "embedding" in type(layer).__name__.lower()
            else ""
        )
        raise ValueError(
            f"`to_prune` layer {layer.name!r} of type {type(layer).__name__} "
            f"cannot be pruned. {SUPPORTED}{hint}"
        )


def prune_low_magnitude(
    to_prune,
    pruning_schedule=None,
    block_size=(1, 1),
    block_pooling_type="AVG",
    pruning_policy=None,
    sparsity_m_by_n=None,
    *,
    inplace=False,
    prune_embeddings=False,
    **kwargs,
):
    """Prunes a Keras 3 layer, list of layers or model by weight magnitude.

    Same signature as `tfmot.sparsity.keras.prune_low_magnitude`. For a model,
    every supported layer inside it is wrapped in `PruneLowMagnitude`,
    including layers nested in keras-hub Transformer blocks, in
    `MultiHeadAttention` and in subclassed or nested models; the returned
    model keeps its class and layer names. Layers that cannot be pruned
    (normalization, pooling, user layers without `PrunableLayer`) are skipped
    and listed in `model.tfcompress_skipped`.

    Args:
        to_prune: a layer, a list of layers, or a built `keras.Model`.
        pruning_schedule: a `PruningSchedule`; default
            `ConstantSparsity(0.5, begin_step=0)`.
        block_size: `(rows, cols)` block sparsity; (1, 1) is unstructured.
        block_pooling_type: 'AVG' or 'MAX'.
        pruning_policy: accepted for TFMOT compatibility; must be None.
        sparsity_m_by_n: `(m, n)` for m zeros in every n consecutive weights
            along each kernel's input axis, e.g. (2, 4).
        inplace: wrap the layers of the given model itself. By default the
            model is copied and left untouched (TFMOT zeroes the caller's
            kernels too).
        prune_embeddings: also prune Embedding / ReversibleEmbedding tables.
        **kwargs: forwarded to each `PruneLowMagnitude` wrapper.

    Returns:
        A `PruneLowMagnitude` layer, a list of them, or a model of the same
        class as `to_prune` with its prunable layers wrapped.

    Raises:
        TypeError: for tf_keras objects and other types.
        ValueError: for bad schedule/block/N:M arguments, an unsupported layer
            passed explicitly, or a model with nothing to prune.

    Example:

    ```python
    schedule = tfcompress.sparsity.PolynomialDecay(0.0, 0.8, 0, 1000)
    pruned = tfcompress.sparsity.prune_low_magnitude(model, schedule)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    pruned.fit(x, y, callbacks=[tfcompress.sparsity.UpdatePruningStep()])
    final = tfcompress.sparsity.strip_pruning(pruned)
    ```
    """
    if pruning_policy is not None:
        raise ValueError(
            "`pruning_policy` is not supported by tfcompress (TFMOT's "
            "PruneForLatencyOnXNNPack targets float CNNs on old x86; sparsity "
            "gives no LiteRT latency here). Received: "
            f"pruning_policy={pruning_policy!r}; pass None."
        )
    # Validated once, before touching any layer.
    pruning_schedule, block_size, sparsity_m_by_n = check_arguments(
        pruning_schedule, block_size, block_pooling_type, sparsity_m_by_n
    )
    wrapper_kwargs = dict(
        pruning_schedule=pruning_schedule,
        block_size=block_size,
        block_pooling_type=block_pooling_type,
        sparsity_m_by_n=sparsity_m_by_n,
        prune_embeddings=prune_embeddings,
        **kwargs,
    )

    if isinstance(to_prune, (list, tuple)):
        for i, layer in enumerate(to_prune):
            ensure_keras3_layer(layer, f"to_prune[{i}]")
            _check_layer(layer, prune_embeddings)
        return [_wrap(layer, wrapper_kwargs) for layer in to_prune]
    ensure_keras3_layer(to_prune, "to_prune")
    if not isinstance(to_prune, keras.Model):
        _check_layer(to_prune, prune_embeddings)
        return _wrap(to_prune, wrapper_kwargs)

    already = [w.layer.name for w in pruning_wrappers(to_prune)]
    if already:
        raise ValueError(
            f"`to_prune` model {to_prune.name!r} is already pruned (wrapped "
            f"layers: {already}). Call tfcompress.sparsity.strip_pruning first "
            "to prune it again with other settings."
        )
    skipped = []

    def transform(ref):
        layer = ref.layer
        if isinstance(layer, keras.Model) or not layer.weights:
            return None
        if not is_prunable(layer, prune_embeddings):
            # Report leaves with weights that could have been pruned; norms
            # are never pruned, by design.
            if _is_leaf(layer) and "Norm" not in type(layer).__name__:
                skipped.append(ref.path)
            return None
        return _wrap(layer, wrapper_kwargs)

    model, replaced = transform_layers(to_prune, transform, inplace=inplace)
    if not replaced:
        raise ValueError(
            f"`to_prune` model {to_prune.name!r} has no layer tfcompress can "
            f"prune (skipped: {skipped or 'none'}). {SUPPORTED}"
        )
    if skipped:
        _LOG.info("prune_low_magnitude skipped unsupported layers: %s", skipped)
    # Set past Keras's tracking: the TF backend remembers tracked list
    # attributes by name, and once `strip_pruning` deletes this one, saving
    # and TFLite conversion look for it again.
    object.__setattr__(model, "tfcompress_skipped", skipped)
    return model
