"""How many units each group keeps, and which: fractions, budgets and rounding.

Pure arithmetic on scores; no Keras objects.
"""

import numpy as np

GLOBAL = "global"


def check_fraction(value, name):
    """Raises unless `value` is a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"`{name}` must be a fraction in [0, 1) of the units to remove (1 would "
            f"remove every one); received {name}={value!r}. Pass e.g. {name}=0.5."
        )


def fractions_for(spec, groups, name):
    """`{group.path: fraction}` for a per-layer spec, or `(GLOBAL, fraction)`.

    Args:
        spec: a fraction for every group, `{"global": f}` for a budget ranked
            across groups, or `{layer path: fraction}` for chosen groups.
        groups: the `Group`s of that kind in the model.
        name: the argument's name, for errors.

    Raises:
        ValueError: for fractions outside [0, 1), unknown paths, or a spec
            when the model has no such group.
    """
    if not groups:
        raise ValueError(
            f"`{name}={spec!r}` was given, but the model has nothing of that kind to "
            f"remove (no {_WHAT[name]} found). Leave `{name}` as None."
        )
    if isinstance(spec, dict):
        if set(spec) == {GLOBAL}:
            check_fraction(spec[GLOBAL], f"{name}['{GLOBAL}']")
            return GLOBAL, spec[GLOBAL]
        paths = {g.path for g in groups}
        for path, fraction in spec.items():
            if path not in paths:
                raise ValueError(
                    f"`{name}` names {path!r}, which holds no {_WHAT[name]}. "
                    f"Layers that do: {sorted(paths)}."
                )
            check_fraction(fraction, f"{name}[{path!r}]")
        return dict(spec)
    check_fraction(spec, name)
    return {g.path: spec for g in groups}


_WHAT = {
    "heads": "multi-head attention layers",
    "ffn": "feed-forward blocks (keras-hub transformer blocks)",
    "filters": "convolution filters whose readers can all shrink",
}


def round_kept(kept, size, round_to):
    """`kept` rounded to a multiple of `round_to` while at least one unit still goes.

    Groups smaller than two tiles keep their exact count.
    """
    if round_to <= 1 or size < 2 * round_to:
        return kept
    rounded = max(round_to, int(round(kept / round_to)) * round_to)
    if rounded >= size:
        rounded = (size - 1) // round_to * round_to
    return rounded


def kept_counts(groups, fractions, scores, round_to, name):
    """Units each group keeps: `{path: count}`.

    Per-layer fractions remove `round(fraction * size)` units of each group;
    a global budget removes that share of all units, taking the lowest
    scores first after scaling each group's scores by their mean (layers'
    scores differ in scale). Every group keeps at least one unit.

    Raises:
        ValueError: when a group would lose nothing for a non-zero fraction,
            or has a single unit (nothing can be removed).
    """
    counts = {}
    if isinstance(fractions, tuple):
        fraction = fractions[1]
        normalized = [(scores[g.path] / (np.mean(scores[g.path]) or 1.0), g) for g in groups]
        pooled = sorted((value, g.path) for values, g in normalized for value in values)
        budget = int(round(fraction * sum(g.size for g in groups)))
        removed = {g.path: 0 for g in groups}
        sizes = {g.path: g.size for g in groups}
        for _, path in pooled:
            if budget == 0:
                break
            if sizes[path] - removed[path] > 1:
                removed[path] += 1
                budget -= 1
        for g in groups:
            kept = g.size - removed[g.path]
            counts[g.path] = (
                round_kept(kept, g.size, round_to) if g.granular and removed[g.path] else kept
            )
        return counts
    for g in groups:
        fraction = fractions.get(g.path)
        if fraction is None or fraction == 0:
            counts[g.path] = g.size
            continue
        removed = int(round(fraction * g.size))
        if g.size < 2:
            raise ValueError(
                f"{g.path!r} has a single unit of `{name}`, which it must keep: there "
                f"is nothing to remove. Leave that layer out (pass `{name}` as a dict "
                "of the layer paths to prune)."
            )
        if removed == 0:
            raise ValueError(
                f"`{name}={fraction}` removes nothing from {g.path!r}, which has "
                f"{g.size} units (round(fraction * size) is 0). Pass a fraction of "
                f"at least {0.5 / g.size:.3g} or leave that layer out."
            )
        kept = max(1, g.size - removed)
        counts[g.path] = round_kept(kept, g.size, round_to) if g.granular else kept
    return counts


def choose_kept(scores, count):
    """Sorted indices of the `count` highest scores (ties to the lower index)."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    return np.sort(order[:count])
