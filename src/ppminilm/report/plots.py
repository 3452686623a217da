"""Plots of the final report (matplotlib, Agg backend, PNG), each readable at a glance.

Accuracy axes span at least :data:`MIN_ACC_SPAN` points so that a half-point difference does
not look like a cliff; points carry their own labels, placed apart so none hides another.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Output resolution; 110 dpi keeps a 6.4 x 4.4 in figure readable and under ~100 kB.
DPI = 110
FIGSIZE = (6.4, 4.4)
#: Smallest span of an accuracy axis, in percentage points.
MIN_ACC_SPAN = 10.0


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display in containers / CI
    import matplotlib.pyplot as plt

    return plt


def acc_limits(values: Sequence[float], span: float = MIN_ACC_SPAN) -> tuple[float, float]:
    """Axis limits around ``values`` (percent) spanning at least ``span`` points, in [0, 100]."""
    lo, hi = min(values), max(values)
    pad = max(0.0, span - (hi - lo)) / 2 + 1.0
    lo, hi = lo - pad, hi + pad
    if lo < 0:
        lo, hi = 0.0, min(100.0, hi - lo)
    if hi > 100:
        lo, hi = max(0.0, lo - (hi - 100)), 100.0
    return lo, hi


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def accuracy_vs_latency(
    points: Sequence[tuple[str, float, float]], *, floor: float | None, path: Path
) -> Path:
    """Average accuracy (%) against seconds per dev pass; every point labelled with its name.

    Labels sit in a column right of the fastest-to-slowest range, in the points' vertical
    order and evenly spaced, each joined to its point by a thin line: no label hides a
    point or another label, however close the points are.

    Args:
        points: ``(name, seconds per pass, accuracy %)`` per model.
        floor: Majority-class accuracy (%), drawn as a dashed line, or None.
        path: PNG to write.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.4))
    colors = plt.get_cmap("tab10")
    accs = [a for _, _, a in points] + ([floor] if floor is not None else [])
    lo, hi = acc_limits(accs)
    xmax = max(x for _, x, _ in points)
    label_x = xmax * 1.15
    order = sorted(range(len(points)), key=lambda i: points[i][2])
    slots = [lo + (hi - lo) * (k + 1) / (len(points) + 1) for k in range(len(points))]
    for slot, i in zip(slots, order, strict=True):
        name, x, y = points[i]
        ax.scatter([x], [y], s=70, color=colors(i % 10), zorder=3)
        ax.annotate(
            f"{name} ({y:.2f}%, {x:.3g} s)",
            xy=(x, y),
            xytext=(label_x, slot),
            textcoords="data",
            va="center",
            fontsize=7.5,
            color=colors(i % 10),
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "relpos": (0, 0.5)},
        )
    if floor is not None:
        ax.axhline(floor, color="0.5", linestyle="--", linewidth=1)
        ax.text(0, floor, " majority class", va="bottom", fontsize=7, color="0.4")
    ax.set_xlim(0, xmax * 2.3)
    ax.set_ylim(lo, hi)
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= xmax * 1.05])
    ax.set_xlabel("seconds per dev pass (lower is faster)")
    ax.set_ylabel("average dev accuracy (%)")
    ax.set_title("Accuracy vs latency")
    ax.grid(True, alpha=0.3)
    return _save(fig, plt, path)


def search_frontier(
    task: str,
    points: Sequence[tuple[str, float, float, float, float, bool]],
    *,
    reference: float,
    budget: float,
    path: Path,
) -> Path:
    """The compression search of one task: dev accuracy (%) against seconds per dev pass.

    Every candidate is a point with its fastest-to-slowest round as a horizontal bar; the
    FP32 reference accuracy and the budget line (reference - budget) are drawn, the region
    below the budget shaded, and the chosen candidate marked with a star. Labels sit in a
    column to the right (as in :func:`accuracy_vs_latency`), so none hides another.

    Args:
        task: Task name (title).
        points: ``(key, median s, fastest s, slowest s, accuracy %, chosen)`` per candidate.
        reference: The fine-tuned FP32 model's dev accuracy (%).
        budget: Accepted drop in points.
        path: PNG to write.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.6))
    colors = plt.get_cmap("tab10")
    floor = reference - budget
    lo, hi = acc_limits([a for *_, a, _ in points] + [reference, floor])
    xmax = max(slow for _, _, _, slow, _, _ in points)
    label_x = xmax * 1.15
    ax.axhspan(lo, floor, color="tab:red", alpha=0.07, zorder=0)
    ax.axhline(reference, color="0.4", linestyle="--", linewidth=1, label="FP32 reference")
    ax.axhline(
        floor,
        color="tab:red",
        linestyle="-.",
        linewidth=1.2,
        label=f"budget: {budget:g} points below (shaded: outside)",
    )
    order = sorted(range(len(points)), key=lambda i: points[i][4])
    slots = [lo + (hi - lo) * (k + 1) / (len(points) + 1) for k in range(len(points))]
    for slot, i in zip(slots, order, strict=True):
        key, median, fast, slow, acc, chosen = points[i]
        color = colors(i % 10)
        ax.errorbar(
            [median],
            [acc],
            xerr=[[median - fast], [slow - median]],
            fmt="*" if chosen else "o",
            markersize=16 if chosen else 7,
            color=color,
            markeredgecolor="black" if chosen else color,
            capsize=3,
            zorder=4 if chosen else 3,
        )
        ax.annotate(
            f"{key}{'  <- chosen' if chosen else ''} ({acc:.2f}%, {median:.3g} s)",
            xy=(median, acc),
            xytext=(label_x, slot),
            textcoords="data",
            va="center",
            fontsize=7.5,
            fontweight="bold" if chosen else "normal",
            color=color,
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "relpos": (0, 0.5)},
        )
    ax.set_xlim(0, xmax * 2.4)
    ax.set_ylim(lo, hi)
    ax.set_xticks([t for t in ax.get_xticks() if 0 <= t <= xmax * 1.05])
    ax.set_xlabel("seconds per dev pass (median; bar: fastest to slowest round)")
    ax.set_ylabel("dev accuracy (%)")
    ax.set_title(f"Compression search: {task} (star: chosen)")
    ax.legend(loc="lower left", fontsize=7, framealpha=0.9)
    ax.grid(True, alpha=0.3)
    return _save(fig, plt, path)


def grid_heatmap(task: str, cells: Sequence[tuple[int, float, float]], path: Path) -> Path:
    """Dev accuracy (%) over batch size (rows) x learning rate (columns); the best boxed.

    Args:
        task: Task name (title).
        cells: ``(batch size, learning rate, accuracy %)`` per grid point.
        path: PNG to write.
    """
    import numpy as np

    plt = _pyplot()
    sizes = sorted({b for b, _, _ in cells})
    rates = sorted({lr for _, lr, _ in cells})
    grid = np.full((len(sizes), len(rates)), np.nan)
    for b, lr, acc in cells:
        grid[sizes.index(b), rates.index(lr)] = acc
    fig, ax = plt.subplots(
        figsize=(max(3.6, 1.3 * len(rates) + 2.2), max(2.8, 0.8 * len(sizes) + 1.8))
    )
    finite = grid[np.isfinite(grid)]
    vmin, vmax = acc_limits(list(finite))
    image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, label="dev accuracy (%)")
    best = np.unravel_index(np.nanargmax(grid), grid.shape)
    middle = (vmin + vmax) / 2
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(
                c,
                r,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=9,
                color="black" if value > middle else "white",
                fontweight="bold" if (r, c) == best else "normal",
            )
    ax.add_patch(
        plt.Rectangle(
            (best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2
        )
    )
    ax.set_xticks(range(len(rates)), [f"{lr:g}" for lr in rates])
    ax.set_yticks(range(len(sizes)), [str(b) for b in sizes])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("batch size")
    ax.set_title(f"Grid search: {task}")
    return _save(fig, plt, path)


def quant_candidates(
    items: Sequence[tuple[str, float, bool]], *, reference: float | None, path: Path
) -> Path:
    """Dev accuracy (%) of every PTQ candidate; the selected one highlighted.

    Args:
        items: ``(label, accuracy %, selected)`` per candidate.
        reference: The FP32 model's accuracy (%), drawn as a line, or None.
        path: PNG to write.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(2.6, 0.32 * len(items) + 1.4)))
    labels = [label for label, _, _ in items]
    accs = [acc for _, acc, _ in items]
    colors = ["tab:orange" if sel else "tab:blue" for _, _, sel in items]
    ax.barh(range(len(items)), accs, color=colors)
    ax.set_yticks(range(len(items)), labels, fontsize=8)
    ax.invert_yaxis()
    values = accs + ([reference] if reference is not None else [])
    ax.set_xlim(*acc_limits(values, span=5.0))
    if reference is not None:
        ax.axvline(reference, color="0.3", linestyle="--", linewidth=1)
        ax.text(reference, -0.6, " FP32", fontsize=7, color="0.3")
    ax.set_xlabel("INT8 dev accuracy (%) (orange: selected)")
    ax.set_title("Post-training quantization candidates")
    ax.grid(True, axis="x", alpha=0.3)
    return _save(fig, plt, path)


def loss_curve(points: Sequence[tuple[int, float]], path: Path) -> Path:
    """Distillation loss against step.

    Args:
        points: ``(step, loss)`` pairs.
        path: PNG to write.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([s for s, _ in points], [v for _, v in points], marker=".", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("relation KL loss")
    ax.set_ylim(bottom=0)
    ax.set_title("General distillation loss")
    ax.grid(True, alpha=0.3)
    return _save(fig, plt, path)
