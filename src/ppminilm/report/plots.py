"""Plots of the final report (matplotlib, Agg backend, PNG): accuracy vs latency, grid heat maps,
the distillation loss curve. Inputs are the validated summary pieces of
:mod:`ppminilm.report.render`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Output resolution; 110 dpi keeps a 6.4 x 4.4 in figure readable and under ~100 kB.
DPI = 110
FIGSIZE = (6.4, 4.4)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display in containers / CI
    import matplotlib.pyplot as plt

    return plt


def accuracy_vs_latency(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Scatter of average accuracy (%) against seconds per dev pass, one labelled point a model.

    Args:
        rows: Model rows with ``name``, ``total_s`` and ``avg_acc`` (fraction); rows missing
            either are left out.
        path: PNG to write.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    points = [r for r in rows if r.get("total_s") is not None and r.get("avg_acc") is not None]
    colors = plt.get_cmap("tab10")
    for i, row in enumerate(points):
        x, y = row["total_s"], row["avg_acc"] * 100
        ax.scatter(
            [x],
            [y],
            s=70,
            color=colors(i % 10),
            zorder=3,
            label=f"{row['name']} ({row.get('speedup_text', '')})",
        )
        # Names go in the legend; the short speed-up label does not collide with neighbours.
        ax.annotate(
            row.get("speedup_text", ""),
            (x, y),
            textcoords="offset points",
            xytext=(0, 8 if i % 2 == 0 else -14),
            ha="center",
            fontsize=8,
        )
    ax.set_xlabel("seconds per dev pass (lower is faster)")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("Accuracy vs latency")
    ax.grid(True, alpha=0.3)
    if points:
        xs = [r["total_s"] for r in points]
        ax.set_xlim(0, max(xs) * 1.25)
        ax.margins(y=0.15)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def grid_heatmap(task: str, points: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Heat map of dev accuracy over batch size (rows) x learning rate (columns); best boxed.

    Args:
        task: Task name (title).
        points: ``{"batch_size", "learning_rate", "dev_acc"}`` dicts.
        path: PNG to write.

    Returns:
        ``path``.
    """
    import numpy as np

    plt = _pyplot()
    sizes = sorted({int(p["batch_size"]) for p in points})
    rates = sorted({float(p["learning_rate"]) for p in points})
    grid = np.full((len(sizes), len(rates)), np.nan)
    for p in points:
        grid[sizes.index(int(p["batch_size"])), rates.index(float(p["learning_rate"]))] = (
            p["dev_acc"] * 100
        )
    fig, ax = plt.subplots(
        figsize=(max(3.6, 1.3 * len(rates) + 2.2), max(2.8, 0.8 * len(sizes) + 1.8))
    )
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="dev accuracy (%)")
    best = np.unravel_index(np.nanargmax(grid), grid.shape)
    finite = grid[np.isfinite(grid)]
    middle = (finite.min() + finite.max()) / 2
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
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def loss_curve(points: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Distillation loss against step.

    Args:
        points: ``{"step", "loss"}`` dicts.
        path: PNG to write.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot([p["step"] for p in points], [p["loss"] for p in points], marker=".", linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("relation KL loss")
    ax.set_title("General distillation loss")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
