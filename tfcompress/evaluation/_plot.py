"""The two-panel Pareto plot of a `Comparison`, drawn without pyplot."""

import math

from tfcompress.evaluation import _pareto

_PANELS = (
    ("raw_bytes", "model size"),
    ("gzip_bytes", "model size after gzip -9"),
    ("latency_ms", "p50 latency (ms)"),
)


def _scale_bytes(values):
    top = max(values)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if top >= scale:
            return scale, unit
    return 1.0, "bytes"


def _draw_panel(ax, candidates, cost_key, metric, higher, reference):
    points = [
        (c.name, getattr(c, cost_key), c.metrics.get(metric)) for c in candidates
    ]
    points = [
        p for p in points
        if p[1] is not None and p[2] is not None and math.isfinite(p[2])
    ]
    label = dict(_PANELS)[cost_key]
    if not points:
        ax.text(0.5, 0.5, f"no {label} measured", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    names, costs, scores = zip(*points)
    scale, unit = (1.0, "ms") if cost_key == "latency_ms" else _scale_bytes(costs)
    xs = [cost / scale for cost in costs]
    on_front = _pareto.pareto_front(costs, [s if higher else -s for s in scores])
    front = sorted((x, y) for x, y, on in zip(xs, scores, on_front) if on)
    ax.step(*zip(*front), where="post", color="C0", alpha=0.5, zorder=1)
    for x, y, on, name in zip(xs, scores, on_front, names):
        ax.scatter(
            x, y, s=90 if on else 45, zorder=3,
            color="C0" if on else "0.6",
            marker="*" if name == reference else "o",
            edgecolors="black" if name == reference else "none",
        )
    # Alternate label offsets by score rank so close points do not overprint.
    order = sorted(range(len(points)), key=lambda i: scores[i])
    for rank, i in enumerate(order):
        ax.annotate(names[i], (xs[i], scores[i]), xytext=(6, 6 if rank % 2 else -12),
                    textcoords="offset points", fontsize=8)
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.margins(x=0.15, y=0.15)
    ax.set_xlabel(label if cost_key == "latency_ms" else f"{label} ({unit})")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.grid(alpha=0.3)


def plot_comparison(comparison, path, metric, size, higher):
    """Writes the size-vs-metric and latency-vs-metric panels to `path` as PNG."""
    # Figure + FigureCanvasAgg draw off-screen without touching pyplot's global
    # backend, so importing or plotting never changes the user's matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(11, 4.6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, cost_key in zip(axes, (size, "latency_ms")):
        _draw_panel(ax, comparison.candidates, cost_key, metric, higher,
                    comparison.reference)
    handles = [
        Line2D([], [], color="C0", marker="o", alpha=0.8, label="Pareto frontier"),
        Line2D([], [], color="0.6", marker="o", linestyle="", label="dominated"),
        Line2D([], [], color="0.3", marker="*", markeredgecolor="black",
               markersize=10, linestyle="", label=f"reference ({comparison.reference})"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(f"{metric} against size and latency")
    fig.savefig(path, format="png")
    return path
