"""Remove whole attention heads, FFN channels and conv filters: a smaller, faster model."""

import keras
import numpy as np

from tfcompress.core.batches import iterate_batches
from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.copy_model import copy_model
from tfcompress.core.replace import recompile
from tfcompress.sparsity.structured_filters import filter_groups
from tfcompress.sparsity.structured_groups import transformer_groups
from tfcompress.sparsity.structured_reconstruct import (
    MODES,
    check_readers,
    reconstruct_readers,
)
from tfcompress.sparsity.structured_report import StructuredPruningReport
from tfcompress.sparsity.structured_scores import (
    CRITERIA,
    NEEDS_GRADIENTS,
    gradient_statistics,
    unit_scores,
)
from tfcompress.sparsity.structured_select import (
    choose_kept,
    fractions_for,
    kept_counts,
)

_KINDS = ("heads", "ffn", "filters")


def _check_reconstruct(reconstruct, representative_data, specs):
    if reconstruct is None:
        return
    if reconstruct not in MODES:
        raise ValueError(
            f"`reconstruct` must be None or one of {MODES}; received reconstruct={reconstruct!r}."
        )
    if representative_data is None:
        raise ValueError(
            f"reconstruct={reconstruct!r} refits the layers reading the pruned units on "
            "data, so it needs `representative_data` (a few batches of model inputs). "
            "Pass it, or reconstruct=None."
        )
    if specs["filters"] is not None:
        raise ValueError(
            f"reconstruct={reconstruct!r} refits attention and FFN output projections; "
            "conv filters have no reconstruction. Pass reconstruct=None with `filters`."
        )


def _check_arguments(criterion, representative_data, round_to, specs):
    if criterion not in CRITERIA:
        raise ValueError(
            f"`criterion` must be one of {CRITERIA}; received criterion={criterion!r}."
        )
    if criterion in NEEDS_GRADIENTS and representative_data is None:
        raise ValueError(
            f"criterion={criterion!r} scores units with gradients, so it needs "
            "`representative_data` (a few batches of model inputs, or `(x, y)` "
            "batches for a compiled model). Pass it, or use criterion='magnitude'."
        )
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(
            f"`round_to` must be a positive integer (1 turns rounding off); "
            f"received round_to={round_to!r}."
        )
    if all(spec is None for spec in specs.values()):
        raise ValueError(
            "Nothing to prune: pass at least one of `heads`, `ffn` or `filters` "
            "(e.g. heads=0.5, ffn=0.5 for a transformer, filters=0.5 for a CNN)."
        )


def _groups(model, wanted, sample):
    found = transformer_groups(model) if {"heads", "ffn"} & wanted else {}
    if "filters" in wanted:
        found["filters"] = filter_groups(model, sample)
    return found


def _plan(model, specs, round_to, sample):
    """Per kind: the groups, their fractions and (for per-layer specs) counts."""
    wanted = {k for k, spec in specs.items() if spec is not None}
    found = _groups(model, wanted, sample)
    plan = {}
    for kind in _KINDS:
        if kind not in wanted:
            continue
        groups = found[kind]
        fractions = fractions_for(specs[kind], groups, kind)
        counts = None
        if not isinstance(fractions, tuple):
            sizes = {g.path: np.zeros(g.size) for g in groups}
            counts = kept_counts(groups, fractions, sizes, round_to, kind)
        plan[kind] = (groups, fractions, counts)
    if all(
        counts is not None and all(counts[g.path] == g.size for g in groups)
        for groups, _, counts in plan.values()
    ):
        raise ValueError(
            f"Every fraction is 0, so nothing would be removed: {specs}. Pass a "
            "fraction above 0 for at least one layer."
        )
    return plan


def prune_structured(
    model,
    heads=None,
    ffn=None,
    filters=None,
    criterion="taylor",
    representative_data=None,
    round_to=8,
    inplace=False,
    return_report=False,
    seed=0,
    reconstruct=None,
    verbose=True,
):
    """Removes whole attention heads, FFN channels and conv filters.

    The result is physically smaller (every kernel that touched a removed
    unit loses that slice) and keeps its class: a keras-hub `BertBackbone`
    stays one, with fewer heads per block (each head keeps its width) and a
    narrower FFN. Before any fine-tuning its outputs equal the original's
    with the removed units' weights set to zero.

    Coupled weights go together: a head is its query, key and value kernels
    and biases and its rows of the output projection; an FFN channel is its
    intermediate (and gate) columns and output rows; a filter is its conv
    kernel and bias, its BatchNorm entries and the input rows of every
    reader (next conv, depthwise conv, Dense through `Flatten`), with the
    inputs of a residual `Add` tied into one group.

    Args:
        model: a built Keras 3 model.
        heads: fraction of the heads of each `MultiHeadAttention` to remove,
            `{"global": f}` to remove that share of all heads ranked across
            layers, or `{block path: f}` for chosen blocks. Every layer keeps
            at least one head. In Llama's grouped-query attention the unit
            is one key/value head with the query heads that read it (the
            report counts these groups); the block gets a
            `PrunedLlamaAttention`, GPT-2 blocks a
            `PrunedCachedMultiHeadAttention`, and `generate` keeps working.
        ffn: the same for the channels of keras-hub blocks' feed-forward
            networks.
        filters: the same for conv filters (path of the conv, or of the
            first conv of a residual-tied group).
        criterion: "taylor" (`|sum w * g|` over the unit, per batch of
            `representative_data`, averaged), "obd"
            (`sum 0.5 * w**2 * E[g**2]`), "fisher" (Kwon et al. 2022's
            Fisher information of the unit's mask: `(sum w * g)**2` per
            batch, averaged; label-free, `g` is the gradient of a random
            projection of the outputs, so it measures how much all of
            them move, which survives a final normalization layer),
            "magnitude" (L2 norm of the unit) or "random" (the baseline). Gradients come from
            `representative_data`: the compiled loss for `(x, y)` batches of a
            compiled model, else half the mean squared float outputs.
        representative_data: batches of inputs (any form
            `tfcompress.core.iterate_batches` reads); needed for taylor,
            obd, fisher and `reconstruct`, and to trace which layers read a conv's output.
        round_to: kept channel and filter counts are rounded to a multiple of
            this (SIMD tiles) when the layer has at least two tiles; heads are
            not rounded.
        inplace: prune `model` itself instead of a copy.
        return_report: also return a `StructuredPruningReport`.
        seed: seed of the "random" criterion and of fisher's projections.
        reconstruct: None (the exactness contract below holds), "least_squares"
            or "bias". After the units are chosen, the layer that reads them
            (the attention output projection over the kept heads, the FFN
            output projection over the kept channels) is refitted on
            `representative_data`, reader by reader in call order, so that
            it reproduces the original model's output there ("bias" refits
            its bias alone, FLAP's compensation; "least_squares" its kernel
            and bias, ridge-regularized towards the current weights). In
            keras-hub blocks the target includes the drift of the residual
            stream, so each block's residual sum tracks the original's.
            Padded tokens (`padding_mask` 0) are left out of the fit.
        verbose: show a progress bar over the refitted layers.

    Returns:
        The pruned model, or `(model, report)` with `return_report=True`.

    Raises:
        ValueError: for a fraction outside [0, 1), an unknown criterion, a
            layer with nothing to remove (a single head, or a fraction that
            rounds to no unit), a kind the model does not have, taylor/obd or
            `reconstruct` without `representative_data`, or `reconstruct`
            with `filters`; all before any work.
        TypeError: for a model that is not a built Keras 3 model.

    Example:

    ```python
    small = tfcompress.sparsity.prune_structured(
        backbone, heads=0.5, ffn=0.5, criterion="taylor",
        representative_data=batches)
    ```
    """
    ensure_keras3_model(model, "model")
    ensure_built(model)
    specs = {"heads": heads, "ffn": ffn, "filters": filters}
    _check_arguments(criterion, representative_data, round_to, specs)
    _check_reconstruct(reconstruct, representative_data, specs)
    # Read once: the data is used for tracing, FLOPs and gradients, and a
    # generator would be exhausted after the first.
    batches = None if representative_data is None else list(iterate_batches(representative_data))
    if batches is not None and not batches:
        raise ValueError(
            "`representative_data` yielded no batch; pass at least one batch of model inputs."
        )
    sample = batches[0] if batches else None
    checked = _plan(model, specs, round_to, sample)
    if reconstruct is not None:
        check_readers(model, [g for groups, _, _ in checked.values() for g in groups], reconstruct)
    report = StructuredPruningReport.start(model, sample)
    original = model
    if not inplace:
        model = copy_model(model)
    elif reconstruct is not None:
        original = copy_model(model)
    plan = _plan(model, specs, round_to, sample)
    statistics = None
    if criterion in NEEDS_GRADIENTS:
        groups = [g for groups, _, _ in plan.values() for g in groups]
        statistics = gradient_statistics(model, groups, batches, criterion=criterion, seed=seed)
    decisions = []
    for kind, (groups, fractions, counts) in plan.items():
        scores = {g.path: unit_scores(g, criterion, statistics, seed) for g in groups}
        if counts is None:
            counts = kept_counts(groups, fractions, scores, round_to, kind)
        for g in groups:
            if counts[g.path] < g.size:
                decisions.append((g, choose_kept(scores[g.path], counts[g.path])))
    for group, keep in decisions:
        group.rebuild(keep)
    # Filter groups share layers (a conv reads one group and produces the
    # next), so their layers are rebuilt once all their groups decided.
    for commit in {id(g.commit): g.commit for g, _ in decisions if g.commit}.values():
        commit()
    if reconstruct is not None:
        pruned_groups = [g for g, _ in decisions]
        bar = keras.utils.Progbar(len(pruned_groups), unit_name="layer") if verbose else None
        reconstruct_readers(
            original,
            model,
            pruned_groups,
            batches,
            reconstruct,
            progress=None if bar is None else bar.update,
        )
    report.finish(model, decisions, sample)
    recompile(model)  # the optimizer was built for the removed units' variables
    return (model, report) if return_report else model
