"""Replace Dense and EinsumDense kernels by two low-rank factors."""

import logging

import keras
import numpy as np

from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.copy_model import copy_model
from tfcompress.core.replace import recompile
from tfcompress.core.transform import transform_layers
from tfcompress.low_rank._factors import Spectrum, allocate_ranks, break_even
from tfcompress.low_rank._latency_gate import factorized_is_faster
from tfcompress.low_rank._selection import (
    bias_count,
    candidates,
    check_arguments,
    check_selection,
    rows_from_build,
    select_layers,
)
from tfcompress.low_rank._statistics import gather_statistics, output_error as relative_output_error
from tfcompress.low_rank.low_rank_dense import LowRankDense
from tfcompress.low_rank.low_rank_einsum_dense import LowRankEinsumDense

_LOG = logging.getLogger("tfcompress")


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
    least per parameter saved. The cut is spread first: no layer goes below
    0.75 x `compression` of its own parameters while another can still be
    cut, since a few layers cut to very low ranks recover worse under
    fine-tuning than many cut evenly.

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
    check_arguments(rank, energy, compression, method, representative_data, round_to, latency_gate)
    specs = select_layers(model, layers)
    check_selection(specs, rank, compression, round_to, layers, latency_gate, representative_data)
    if not inplace:
        model, specs = _copy_with_specs(model, list(specs))
    stats = (
        gather_statistics(model, specs, representative_data)
        if representative_data is not None
        else {}
    )
    matrices, spectra = _spectra(specs, method, stats)
    if compression is not None:
        plan = allocate_ranks(
            {p: (s.shape, bias_count(s.layer), spectra[p].discarded) for p, s in specs.items()},
            compression,
            round_to,
        )
    else:
        plan = _fixed_ranks(specs, spectra, rank, energy, round_to)
    slower = (
        _keep_slower_dense(plan, specs, stats, 2 if latency_gate is True else int(latency_gate))
        if latency_gate
        else {}
    )
    replacements = {
        path: _replacement(specs[path], matrices[path], spectra[path], chosen, stats.get(path))
        for path, chosen in plan.items()
        if chosen is not None
    }
    if not replacements:
        raise _nothing_smaller(model, rank, energy, compression, slower)
    model, _ = transform_layers(model, lambda ref: replacements.get(ref.path), inplace=True)
    return recompile(model)  # the optimizer was built for the dense kernels


def _copy_with_specs(model, paths):
    """A copy of `model` and the `KernelSpec`s of its layers at `paths`."""
    model = copy_model(model)
    specs, _ = candidates(model)
    return model, {path: specs[path] for path in paths}


def _spectra(specs, method, stats):
    """`({path: kernel matrix}, {path: Spectrum})`, weighted by the layer statistics."""
    matrices, spectra = {}, {}
    for path, spec in specs.items():
        matrices[path] = spec.matrix(keras.ops.convert_to_numpy(spec.layer.kernel))
        entry = stats.get(path)
        spectra[path] = Spectrum(
            matrices[path],
            method,
            gram=entry.gram if entry is not None else None,
            abs_mean=entry.abs_mean if entry is not None else None,
        )
    return matrices, spectra


def _fixed_ranks(specs, spectra, rank, energy, round_to):
    """`{path: rank or None}` for a fixed `rank` or `energy`; None where it would not shrink."""
    plan = {}
    for path, spec in specs.items():
        shape = spec.shape
        chosen = (
            rank
            if rank is not None
            else _rounded_up(spectra[path].energy_rank(energy), round_to, min(shape))
        )
        plan[path] = chosen if chosen <= min(shape) and chosen <= break_even(shape) else None
    return plan


def _keep_slower_dense(plan, specs, stats, threads):
    """Sets `plan[path]` to None where LiteRT runs the factors slower; returns `{path: why}`."""
    slower = {}
    for path, spec in specs.items():
        if plan[path] is None:
            continue
        m, n = spec.shape
        rows = stats[path].rows_per_example if path in stats else rows_from_build(spec)
        faster, dense_ms, low_ms = factorized_is_faster(rows, m, n, plan[path], threads)
        if not faster:
            _LOG.info(
                "low_rank: %s stays dense: %dx%d at rank %d, %d rows: "
                "%.4f ms factorized vs %.4f ms dense",
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
    return slower


def _nothing_smaller(model, rank, energy, compression, slower):
    asked = next(
        f"{k}={v}"
        for k, v in (("rank", rank), ("energy", energy), ("compression", compression))
        if v is not None
    )
    return ValueError(
        f"No layer of {model.name!r} gets smaller at {asked}"
        + (f" once the latency gate kept slower factorizations dense ({slower})" if slower else "")
        + ": a rank-r factorization of an m x n kernel is smaller only when r * (m + n) < m * n. "
        "Pass a smaller `rank` or `energy`, or use `compression`."
    )


def _replacement(spec, matrix, spectrum, rank, entry):
    first, second = spectrum.factors(rank)
    product = first @ second
    norm = np.linalg.norm(matrix)
    weight_error = float(np.linalg.norm(matrix - product) / norm) if norm else 0.0
    output_error = relative_output_error(matrix, product, entry.gram) if entry is not None else None
    first, second = spec.factor_kernels(first, second)
    cls = LowRankEinsumDense if isinstance(spec.layer, keras.layers.EinsumDense) else LowRankDense
    return cls.from_layer(
        spec.layer, first, second, weight_error=weight_error, output_error=output_error
    )
