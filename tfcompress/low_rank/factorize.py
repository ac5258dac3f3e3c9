"""Replace Dense and EinsumDense kernels by two low-rank factors."""

import logging

import keras
import numpy as np

from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.copy_model import copy_model
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.transform import transform_layers
from tfcompress.core.wrapper import CompressionWrapper, build_shape_of
from tfcompress.low_rank._base import LowRankLayer
from tfcompress.low_rank._factors import DATA_METHODS, METHODS, Spectrum, allocate_ranks, break_even
from tfcompress.low_rank._kernel_spec import KernelSpec
from tfcompress.low_rank._latency_gate import factorized_is_faster
from tfcompress.low_rank._statistics import gather_statistics
from tfcompress.low_rank.low_rank_dense import LowRankDense
from tfcompress.low_rank.low_rank_einsum_dense import LowRankEinsumDense

_LOG = logging.getLogger("tfcompress")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_arguments(
    rank, energy, compression, method, representative_data, round_to, latency_gate
):
    given = [
        name
        for name, value in (("rank", rank), ("energy", energy), ("compression", compression))
        if value is not None
    ]
    if len(given) != 1:
        raise ValueError(
            "Pass exactly one of `rank`, `energy` or `compression`. Received: "
            f"rank={rank!r}, energy={energy!r}, compression={compression!r}."
        )
    if rank is not None and (not _is_int(rank) or rank < 1):
        raise ValueError(f"`rank` must be an int >= 1. Received: rank={rank!r}")
    if energy is not None and not (isinstance(energy, (int, float)) and 0 < energy <= 1):
        raise ValueError(
            f"`energy` must be in (0, 1] (the fraction of the squared spectrum kept). Received: energy={energy!r}"
        )
    if compression is not None and not (
        isinstance(compression, (int, float)) and 0 < compression < 1
    ):
        raise ValueError(
            "`compression` must be in (0, 1) (the fraction of the factorized layers' parameters "
            f"kept, e.g. 0.7). Received: compression={compression!r}"
        )
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    if method in DATA_METHODS and representative_data is None:
        raise ValueError(
            f"`method={method!r}` weights the factorization by the layers' inputs and needs "
            "`representative_data` (a few hundred examples of model inputs); pass it, or use method='svd'."
        )
    if not _is_int(round_to) or round_to < 1:
        raise ValueError(f"`round_to` must be an int >= 1. Received: round_to={round_to!r}")
    if not (isinstance(latency_gate, bool) or (_is_int(latency_gate) and latency_gate >= 1)):
        raise ValueError(
            "`latency_gate` must be False, True or a LiteRT thread count >= 1. "
            f"Received: latency_gate={latency_gate!r}"
        )


def _outside_factorized_and_wrapped(layer):
    return not isinstance(layer, (LowRankLayer, CompressionWrapper))


def _candidates(model):
    """`{path: KernelSpec}` of Dense/EinsumDense layers, and `{path: reason}` of the others."""
    specs, skipped = {}, {}
    for ref in walk_layers(model, descend=_outside_factorized_and_wrapped):
        if not isinstance(ref.layer, (keras.layers.Dense, keras.layers.EinsumDense)):
            continue
        if not ref.layer.built:
            continue
        spec = KernelSpec(ref.layer)
        if spec.reason is None:
            specs[ref.path] = spec
        else:
            skipped[ref.path] = spec.reason
    return specs, skipped


def _select(specs, skipped, layers, model):
    if layers is None:
        return specs
    if callable(layers):
        return {path: spec for path, spec in specs.items() if layers(path, spec.layer)}
    if isinstance(layers, str) or not isinstance(layers, (list, tuple, set)):
        raise TypeError(
            "`layers` must be None, a list of layer paths or names, or a callable "
            f"`(path, layer) -> bool`. Received: layers={layers!r}"
        )
    chosen = {}
    for entry in layers:
        matched = {p: s for p, s in specs.items() if p == entry or s.layer.name == entry}
        if not matched:
            why = skipped.get(entry)
            raise ValueError(
                f"`layers` names {entry!r}, which "
                + (
                    f"cannot be factorized: {why}."
                    if why
                    else f"is no Dense/EinsumDense of {model.name!r}."
                )
                + f" Factorizable layers: {list(specs)[:8]}{' ...' if len(specs) > 8 else ''}"
            )
        chosen.update(matched)
    return chosen


def _bias_count(layer):
    bias = getattr(layer, "bias", None)
    return int(np.prod(bias.shape)) if bias is not None else 0


def _output_error(matrix, first, second, gram):
    """`||X (W - AB)|| / ||X W||` from XᵀX alone: `tr(Dᵀ XᵀX D)` for D = W and W - AB."""
    delta = matrix - first @ second
    total = float(np.sum((gram @ matrix) * matrix))
    error = float(np.sum((gram @ delta) * delta))
    return float(np.sqrt(max(error, 0.0) / total)) if total > 0 else 0.0


def _parameters(spec):
    return int(np.prod(spec.shape)) + _bias_count(spec.layer)


def _smallest(spec, round_to):
    """Parameters of `spec`'s layer at the lowest rank `allocate_ranks` reaches."""
    if break_even(spec.shape) < round_to:
        return _parameters(spec)
    return round_to * sum(spec.shape) + _bias_count(spec.layer)


def _rounded_up(rank, round_to, limit):
    return min(-(-rank // round_to) * round_to, limit)


def factorize(
    model,
    rank=None,
    energy=None,
    compression=None,
    method="svd",
    representative_data=None,
    layers=None,
    round_to=8,
    inplace=False,
    latency_gate=False,
):
    """Replaces Dense/EinsumDense kernels by two low-rank factors.

    An `(m, n)` kernel (EinsumDense: its input axes by its output axes, read
    from the equation) becomes `(m, r)` and `(r, n)` factors in a
    `LowRankDense` / `LowRankEinsumDense` of the same name, at any depth
    (attention projections and FFNs inside keras-hub blocks included). A
    layer is only replaced when `r * (m + n) < m * n`, i.e. when it gets
    smaller. The factors are computed in float64, the bias stays on the
    second one.

    Methods: "svd" (truncated SVD of the kernel), "activation_aware" (ASVD:
    the kernel's rows scaled by each input channel's mean |x| to the power
    0.5 before the SVD) and "whitened" (SVD-LLM: the SVD of `Lᵀ W` with `L`
    the Cholesky factor of XᵀX, shifted when not positive definite, so the
    discarded singular values are the output error on the data). Pre-trained
    transformer weights are not low-rank but their activations are, so the
    data-aware methods keep far more of the outputs at the same rank.

    Rank: a fixed `rank`; an `energy` fraction of the (weighted) squared
    spectrum per layer, rounded up to a multiple of `round_to`; or a global
    `compression` (fraction of the selected layers' parameters kept), met
    within one rounding step by lowering ranks where the relative output
    error on `representative_data` (with "svd": the weight error) grows
    least per parameter saved.

    Args:
        model: a built Keras 3 model.
        rank: fixed rank for every selected layer.
        energy: fraction in (0, 1] of the squared spectrum kept per layer.
        compression: fraction in (0, 1) of the selected layers' parameters
            (kernels and biases) kept overall.
        method: "svd", "activation_aware" or "whitened".
        representative_data: model inputs (any form of
            `tfcompress.export.to_tflite`'s `representative_data`), needed by
            the data-aware methods; with it, reports carry output errors.
        layers: None (every Dense/EinsumDense), a list of layer paths (as
            `tfcompress.core.walk_layers` gives them) or names (a name
            selects every layer of that name, e.g. "query"), or a callable
            `(path, layer) -> bool`.
        round_to: ranks chosen by `energy`/`compression` are multiples of it.
        inplace: factorize `model` itself instead of a copy.
        latency_gate: True (or a thread count; True means 2) keeps a layer
            dense when two FULLY_CONNECTED ops of its shapes are not faster
            than one on LiteRT (float32, measured once per shape). Needs the
            rows per example, from `representative_data` or the layer's
            build shape.

    Returns:
        The factorized model, of the class of `model`.

    Raises:
        ValueError: for a `rank` larger than a selected layer allows, an
            `energy` outside (0, 1], a `compression` outside (0, 1) or below
            what rank `round_to` allows, a data-aware method without data, a
            model or selection with nothing to factorize, or when no layer
            gets smaller at the requested rank. All but the last before any
            statistic is gathered.
        TypeError: for a non-Keras-3 model or a malformed `layers`.

    Example:

    ```python
    small = tfcompress.low_rank.factorize(
        backbone, compression=0.7, method="whitened",
        representative_data=batches)
    print(tfcompress.low_rank.low_rank_report(small))
    ```
    """
    ensure_keras3_model(model, "model")
    ensure_built(model)
    _check_arguments(rank, energy, compression, method, representative_data, round_to, latency_gate)
    specs, skipped = _candidates(model)
    specs = _select(specs, skipped, layers, model)
    if not specs:
        raise ValueError(
            f"Nothing to factorize in {model.name!r}: no "
            + ("selected " if layers is not None else "")
            + "Dense or EinsumDense layer with a kernel that is one matrix"
            + (f" (skipped: {dict(list(skipped.items())[:4])})" if skipped else "")
            + ". Pass a model with such layers, or other `layers`."
        )
    if rank is not None:
        too_small = {p: min(s.shape) for p, s in specs.items() if rank > min(s.shape)}
        if too_small and (layers is not None or len(too_small) == len(specs)):
            raise ValueError(
                f"`rank={rank}` is larger than these layers allow (their largest rank): "
                f"{dict(list(too_small.items())[:6])}. Pass a smaller `rank` or leave them out of `layers`."
            )
    if compression is not None:
        total = sum(_parameters(s) for s in specs.values())
        floor = sum(_smallest(s, round_to) for s in specs.values())
        if compression * total < floor:
            raise ValueError(
                f"`compression={compression}` keeps fewer parameters than rank {round_to} in every "
                f"selected layer allows ({floor / total:.3f} of them); pass a larger `compression` "
                "or a smaller `round_to`."
            )
    threads = 2 if latency_gate is True else int(latency_gate)
    if latency_gate:
        for path, spec in specs.items():
            if representative_data is None and _rows_from_build(spec) is None:
                raise ValueError(
                    f"`latency_gate` needs the rows each example feeds {path!r}, whose build shape "
                    "has unknown dimensions; pass `representative_data`."
                )

    paths = list(specs)
    if not inplace:
        model = copy_model(model)
        specs, _ = _candidates(model)
        specs = {path: specs[path] for path in paths}
    stats = (
        gather_statistics(model, specs, representative_data)
        if representative_data is not None
        else {}
    )

    spectra, matrices = {}, {}
    for path, spec in specs.items():
        matrices[path] = spec.matrix(keras.ops.convert_to_numpy(spec.layer.kernel))
        entry = stats.get(path)
        spectra[path] = Spectrum(
            matrices[path],
            method,
            gram=entry.gram if entry is not None else None,
            abs_mean=entry.abs_mean if entry is not None else None,
        )

    if compression is not None:
        plan = allocate_ranks(
            {p: (specs[p].shape, _bias_count(specs[p].layer), spectra[p].discarded) for p in paths},
            compression,
            round_to,
        )
    else:
        plan = {}
        for path in paths:
            shape = specs[path].shape
            chosen = (
                rank
                if rank is not None
                else _rounded_up(spectra[path].energy_rank(energy), round_to, min(shape))
            )
            plan[path] = chosen if chosen <= min(shape) and chosen <= break_even(shape) else None

    slower = {}
    if latency_gate:
        for path in paths:
            if plan[path] is None:
                continue
            m, n = specs[path].shape
            rows = stats[path].rows_per_example if path in stats else _rows_from_build(specs[path])
            faster, dense_ms, low_ms = factorized_is_faster(rows, m, n, plan[path], threads)
            if not faster:
                _LOG.info(
                    "low_rank: %s stays dense: %dx%d at rank %d, %d rows: %.4f ms factorized vs %.4f ms dense",
                    path,
                    m,
                    n,
                    plan[path],
                    rows,
                    low_ms,
                    dense_ms,
                )
                slower[path] = f"{low_ms:.4f} ms factorized vs {dense_ms:.4f} ms dense"
                plan[path] = None

    replacements = {}
    for path in paths:
        if plan[path] is None:
            continue
        replacements[path] = _replacement(
            specs[path], matrices[path], spectra[path], plan[path], stats.get(path)
        )
    if not replacements:
        asked = next(
            f"{k}={v}"
            for k, v in (("rank", rank), ("energy", energy), ("compression", compression))
            if v is not None
        )
        raise ValueError(
            f"No layer of {model.name!r} gets smaller at {asked}"
            + (
                f" once the latency gate kept slower factorizations dense ({slower})"
                if slower
                else ""
            )
            + ": a rank-r factorization of an m x n kernel is smaller only when r * (m + n) < m * n. "
            "Pass a smaller `rank` or `energy`, or use `compression`."
        )
    model, _ = transform_layers(model, lambda ref: replacements.get(ref.path), inplace=True)
    return model


def _rows_from_build(spec):
    """Matrix rows one example feeds the layer, from its build shape (None if unknown)."""
    shape = build_shape_of(spec.layer)
    if not shape or any(d is None for d in shape[1:]):
        return None
    return max(1, int(np.prod(shape[1:])) // spec.shape[0])


def _replacement(spec, matrix, spectrum, rank, entry):
    first, second = spectrum.factors(rank)
    norm = np.linalg.norm(matrix)
    weight_error = float(np.linalg.norm(matrix - first @ second) / norm) if norm else 0.0
    output_error = _output_error(matrix, first, second, entry.gram) if entry is not None else None
    first, second = spec.factor_kernels(first, second)
    cls = LowRankEinsumDense if isinstance(spec.layer, keras.layers.EinsumDense) else LowRankDense
    return cls.from_layer(
        spec.layer, first, second, weight_error=weight_error, output_error=output_error
    )
