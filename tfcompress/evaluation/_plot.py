"""The two-panel Pareto plot of a `Comparison`, drawn without pyplot."""

import numpy as np

# Rough width of a character of the 8 pt label font, in points.
_CHAR_WIDTH = 5.0

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


def _to_points(ax, xs, ys):
    """Approximate positions in points inside the axes, for label placement."""
    ax.autoscale_view()
    fig_w, fig_h = ax.figure.get_size_inches() * 72
    box = ax.get_position()
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    if ax.get_xscale() == "log":
        xs, x0, x1 = np.log10(xs), np.log10(x0), np.log10(x1)
    px = (np.asarray(xs) - x0) / ((x1 - x0) or 1.0) * box.width * fig_w
    py = (np.asarray(ys) - y0) / ((y1 - y0) or 1.0) * box.height * fig_h
    return px, py


def _label_points(ax, xs, ys, names, gap=7, line=10):
    """Labels each point on its right, pushing down labels that would overprint."""
    px, py = _to_points(ax, xs, ys)
    placed = []
    for i in sorted(range(len(names)), key=lambda i: -py[i]):
        left, right = px[i] + gap, px[i] + gap + _CHAR_WIDTH * len(names[i])
        y = py[i]
        while any(left < r and l < right and abs(y - other) < line for l, r, other in placed):
            y -= line
        placed.append((left, right, y))
        moved = abs(y - py[i]) > 0.5
        ax.annotate(
            names[i],
            (xs[i], ys[i]),
            xytext=(gap, y - py[i]),
            textcoords="offset points",
            fontsize=8,
            va="center",
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if moved else None,
        )


def _draw_panel(ax, cost_key, points, metric, higher, reference):
    from matplotlib.ticker import FuncFormatter

    label = dict(_PANELS)[cost_key]
    if not points:
        missing = "latency" if cost_key == "latency_ms" else "size"
        ax.text(
            0.5,
            0.5,
            f"no {missing} measured with {metric}",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.4",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    names, costs, scores, on_front = zip(*points)
    scale, unit = (1.0, "ms") if cost_key == "latency_ms" else _scale_bytes(costs)
    xs = [cost / scale for cost in costs]
    front = sorted((x, y) for x, y, on in zip(xs, scores, on_front) if on)
    ax.step(*zip(*front), where="post", color="C0", alpha=0.5, zorder=1)
    for x, y, on, name in zip(xs, scores, on_front, names):
        ax.scatter(
            x,
            y,
            s=90 if on else 45,
            zorder=3,
            color="C0" if on else "0.6",
            marker="*" if name == reference else "o",
            edgecolors="black" if name == reference else "none",
        )
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.margins(x=0.15, y=0.15)
    _label_points(ax, xs, scores, names)
    ax.set_xlabel(label if cost_key == "latency_ms" else f"{label} ({unit})")
    ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
    ax.grid(alpha=0.3)


def plot_panels(path, panels, metric, higher, reference):
    """Writes one panel per `(cost_key, points)` side by side to `path` as PNG.

    `points` are `(name, cost, score, on_frontier)` tuples.
    """
    # Figure + FigureCanvasAgg draw off-screen without touching pyplot's global
    # backend, so importing or plotting never changes the user's matplotlib.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(11, 4.6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    for ax, (cost_key, points) in zip(axes, panels):
        _draw_panel(ax, cost_key, points, metric, higher, reference)
    handles = [
        Line2D([], [], color="C0", marker="o", alpha=0.8, label="Pareto frontier"),
        Line2D([], [], color="0.6", marker="o", linestyle="", label="dominated"),
        Line2D(
            [],
            [],
            color="0.3",
            marker="*",
            markeredgecolor="black",
            markersize=10,
            linestyle="",
            label=f"reference ({reference})",
        ),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    fig.suptitle(f"{metric} against size and latency")
    fig.savefig(path, format="png")
    return path
