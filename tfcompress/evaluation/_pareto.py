"""Pareto frontier of (cost, quality) points and which way a metric improves."""

_HIGHER_IS_BETTER = ("accuracy", "agreement", "cosine", "similarity", "f1", "auc")
_LOWER_IS_BETTER = ("perplexity", "loss", "error", "nll", "mse", "mae")


def metric_direction(metric, higher_is_better=None):
    """True when a higher `metric` is better, from its name or the override.

    Raises:
        ValueError: when the name does not say and no override is given.
    """
    if higher_is_better is not None:
        return bool(higher_is_better)
    lowered = metric.lower()
    if any(word in lowered for word in _LOWER_IS_BETTER):
        return False
    if any(word in lowered for word in _HIGHER_IS_BETTER):
        return True
    raise ValueError(
        f"Cannot tell whether a higher {metric!r} is better. Pass "
        "`higher_is_better=True` or `False`."
    )


def pareto_front(costs, scores):
    """Flags the points no other point beats: cost no higher, score no lower,
    and one of the two strictly better. Lower cost and higher score are better.
    """
    flags = []
    for cost, score in zip(costs, scores):
        dominated = any(
            c <= cost and s >= score and (c < cost or s > score) for c, s in zip(costs, scores)
        )
        flags.append(not dominated)
    return flags
