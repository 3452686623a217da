"""Throughput vs batch size and vs threads for the fastest INT8 engine, and the plot.

Every point runs the same examples (``EXAMPLES_PER_PASS`` per pass, cut into batches of the
point's size), :data:`PASSES` timed passes after one untimed one, median reported. Engines with
1 and 2 threads are separate instances of the same model, timed interleaved point by point.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import INPUT_KEYS, Batch

logger = logging.getLogger(__name__)

BATCH_SIZES = (1, 8, 32, 64)
THREADS = (1, 2)
#: Examples per timed pass (a multiple of every batch size).
EXAMPLES_PER_PASS = 64
PASSES = 2
PLOT_FILE = "scaling.png"


def pass_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> list[Batch]:
    """The :data:`EXAMPLES_PER_PASS` first examples in batches of ``batch_size``."""
    n = EXAMPLES_PER_PASS
    if len(arrays["input_ids"]) < n:
        raise ValueError(f"scaling needs {n} examples, got {len(arrays['input_ids'])}")
    return [
        {k: np.ascontiguousarray(arrays[k][i : i + batch_size]) for k in INPUT_KEYS}
        for i in range(0, n, batch_size)
    ]


def measure_scaling(
    runs: Mapping[int, Callable[[Batch], Any]],
    arrays: Mapping[str, np.ndarray],
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> list[dict[str, Any]]:
    """Throughput of each (threads, batch size) point.

    Args:
        runs: Threads -> the engine's ``run`` opened with that many threads.
        arrays: Encoded examples (at least :data:`EXAMPLES_PER_PASS`).
        batch_sizes: Batch sizes to measure.

    Returns:
        One dict per point: ``threads``, ``batch_size``, ``throughput`` (examples/s at the
        median pass), ``pass_s`` (all passes), ``ms_per_batch``.
    """
    points = []
    for bs in batch_sizes:
        batches = pass_batches(arrays, bs)
        passes: dict[int, list[float]] = {t: [] for t in runs}
        for i in range(PASSES + 1):
            for threads, run in runs.items():
                t0 = time.perf_counter()
                for b in batches:
                    run(b)
                if i:  # the first pass warms up this batch shape
                    passes[threads].append(time.perf_counter() - t0)
        for threads, seconds in passes.items():
            med = statistics.median(seconds)
            points.append(
                {
                    "threads": threads,
                    "batch_size": bs,
                    "throughput": round(EXAMPLES_PER_PASS / med, 2),
                    "pass_s": [round(s, 4) for s in seconds],
                    "ms_per_batch": round(med / len(batches) * 1e3, 2),
                }
            )
            logger.info(
                "scaling %d threads batch %d: %.1f ex/s", threads, bs, points[-1]["throughput"]
            )
    return points


def plot_scaling(series: Mapping[str, Sequence[Mapping[str, Any]]], out: Path, title: str) -> Path:
    """Two panels: throughput vs batch size (one line per engine x threads) and vs threads.

    Args:
        series: Engine label -> :func:`measure_scaling` points.
        out: PNG path.
        title: Figure title (CPU, sequence length).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_b, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, points in series.items():
        threads = sorted({p["threads"] for p in points})
        sizes = sorted({p["batch_size"] for p in points})
        by = {(p["threads"], p["batch_size"]): p["throughput"] for p in points}
        for t in threads:
            ax_b.plot(sizes, [by[(t, b)] for b in sizes], marker="o", label=f"{label}, {t} thr")
        for b in sizes:
            ax_t.plot(threads, [by[(t, b)] for t in threads], marker="o", label=f"{label}, bs {b}")
    ax_b.set_xscale("log", base=2)
    ax_b.set_xlabel("batch size")
    ax_b.set_ylabel("throughput (examples/s)")
    ax_b.set_title("vs batch size")
    ax_t.set_xlabel("threads")
    ax_t.set_xticks(list(THREADS))
    ax_t.set_title("vs threads")
    for ax in (ax_b, ax_t):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def scaling_table(series: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: engine, threads, then throughput per batch size."""
    sizes = sorted({p["batch_size"] for pts in series.values() for p in pts})
    lines = [
        "| engine | threads | " + " | ".join(f"bs {b} ex/s" for b in sizes) + " |",
        "|---|---:|" + "---:|" * len(sizes),
    ]
    for label, points in series.items():
        by = {(p["threads"], p["batch_size"]): p["throughput"] for p in points}
        for t in sorted({p["threads"] for p in points}):
            cells = [f"{by[(t, b)]:.1f}" if (t, b) in by else "" for b in sizes]
            lines.append(f"| {label} | {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
