"""`factorize`'s checks and layer selection: everything that can fail before any work."""

import keras
import numpy as np

from tfcompress.core.checks import check_int, check_number
from tfcompress.core.layer_tree import walk_layers
from tfcompress.core.wrapper import CompressionWrapper, build_shape_of
from tfcompress.low_rank._base import LowRankLayer
from tfcompress.low_rank._factors import DATA_METHODS, METHODS, break_even
from tfcompress.low_rank._kernel_spec import KernelSpec


def check_arguments(rank, energy, compression, method, representative_data, round_to, latency_gate):
    """Raises for a malformed `factorize` argument, before the model is read."""
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
    check_int(rank, "rank", 1, allow_none=True, expected="an int >= 1")
    check_number(
        energy,
        "energy",
        0,
        1,
        open_low=True,
        allow_none=True,
        expected="in (0, 1] (the fraction of the squared spectrum kept)",
    )
    check_number(
        compression,
        "compression",
        0,
        1,
        open_low=True,
        open_high=True,
        allow_none=True,
        expected="in (0, 1) (the fraction of the factorized layers' parameters kept, e.g. 0.7)",
    )
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    if method in DATA_METHODS and representative_data is None:
        raise ValueError(
            f"`method={method!r}` weights the factorization by the layers' inputs and needs "
            "`representative_data` (a few hundred examples of model inputs); pass it, or use "
            "method='svd'."
        )
    check_int(round_to, "round_to", 1, expected="an int >= 1")
    if not isinstance(latency_gate, bool):
        check_int(
            latency_gate, "latency_gate", 1, expected="False, True or a LiteRT thread count >= 1"
        )


def _outside_factorized_and_wrapped(layer):
    return not isinstance(layer, (LowRankLayer, CompressionWrapper))


def candidates(model):
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


def select_layers(model, layers):
    """`{path: KernelSpec}` of the layers `layers` selects; raises when there are none."""
    specs, skipped = candidates(model)
    specs = _select(specs, skipped, layers, model)
    if not specs:
        raise ValueError(
            f"Nothing to factorize in {model.name!r}: no "
            + ("selected " if layers is not None else "")
            + "Dense or EinsumDense layer with a kernel that is one matrix"
            + (f" (skipped: {dict(list(skipped.items())[:4])})" if skipped else "")
            + ". Pass a model with such layers, or other `layers`."
        )
    return specs


def bias_count(layer):
    bias = getattr(layer, "bias", None)
    return int(np.prod(bias.shape)) if bias is not None else 0


def _parameters(spec):
    return int(np.prod(spec.shape)) + bias_count(spec.layer)


def _smallest(spec, round_to):
    """Parameters of `spec`'s layer at the lowest rank `allocate_ranks` reaches."""
    if break_even(spec.shape) < round_to:
        return _parameters(spec)
    return round_to * sum(spec.shape) + bias_count(spec.layer)


def rows_from_build(spec):
    """Matrix rows one example feeds the layer, from its build shape (None if unknown)."""
    shape = build_shape_of(spec.layer)
    if not shape or any(d is None for d in shape[1:]):
        return None
    return max(1, int(np.prod(shape[1:])) // spec.shape[0])


def check_selection(specs, rank, compression, round_to, layers, latency_gate, representative_data):
    """Raises when the selected layers cannot meet `rank`, `compression` or the latency gate."""
    if rank is not None:
        too_small = {p: min(s.shape) for p, s in specs.items() if rank > min(s.shape)}
        if too_small and (layers is not None or len(too_small) == len(specs)):
            raise ValueError(
                f"`rank={rank}` is larger than these layers allow (their largest rank): "
                f"{dict(list(too_small.items())[:6])}. Pass a smaller `rank` or leave them out "
                "of `layers`."
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
    if latency_gate:
        for path, spec in specs.items():
            if representative_data is None and rows_from_build(spec) is None:
                raise ValueError(
                    f"`latency_gate` needs the rows each example feeds {path!r}, whose build shape "
                    "has unknown dimensions; pass `representative_data`."
                )
