"""Bench rows -> speed-ups, goal verdicts and the Markdown table (pure functions, no paddle)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ppminilm.modeling.accounting import format_count

#: Goals from the issue.
GOAL_INT8_SPEEDUP = 6.0  # pruned+INT8 vs BERT-base FP32, CPU
GOAL_MAX_ACC_DROP_POINTS = 0.5  # pruned+INT8 vs FP32 6L, accuracy points
#: Row keys the goals compare.
PADDLE_INT8 = "paddle_6l_pruned_int8"
ORT_INT8 = "ort_6l_pruned_int8"

COLUMNS = (
    "model",
    "engine / precision",
    "params",
    "FLOPs",
    "latency ms/batch",
    "p95 ms",
    "throughput ex/s",
    "speed-up vs BERT-base FP32",
    "accuracy",
    "INT8 kernels used",
)


def speedup(baseline_ms: float, ms: float) -> float:
    """How many times faster than the baseline (per-batch latency ratio).

    Raises:
        ValueError: On a non-positive latency.
    """
    if baseline_ms <= 0 or ms <= 0:
        raise ValueError(f"latencies must be > 0, got baseline {baseline_ms} and {ms}")
    return baseline_ms / ms


def add_speedups(rows: Sequence[dict[str, Any]]) -> None:
    """Set ``speedup`` on every timed row vs the ``baseline`` row of its device.

    The CPU baseline is BERT-base FP32 on Paddle; GPU rows compare with BERT-base TensorRT FP32.
    """
    base = {r["device"]: r for r in rows if r.get("baseline") and r.get("timing")}
    for row in rows:
        ref = base.get(row["device"])
        if ref and row.get("timing"):
            row["speedup"] = round(speedup(ref["timing"]["batch_ms"], row["timing"]["batch_ms"]), 2)


def _row(rows: Sequence[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
    return next((r for r in rows if r["key"] == key), None)


def evaluate_goals(
    rows: Sequence[Mapping[str, Any]], acc_fp32_6l: float | None, acc_int8: float | None
) -> list[dict[str, Any]]:
    """Verdicts for the three goals, each with what was measured and by how much it missed.

    Args:
        rows: Bench rows with ``key``, ``timing.batch_ms`` and ``speedup``.
        acc_fp32_6l: Dev accuracy of the trained FP32 6L model (0..1), or None.
        acc_int8: Dev accuracy of the trained pruned INT8 model (0..1), or None.

    Returns:
        One dict per goal: ``goal``, ``target``, ``measured``, ``met`` (bool or None when not
        measured) and ``gap`` (text; empty when met).
    """
    goals: list[dict[str, Any]] = []
    int8 = _row(rows, PADDLE_INT8)
    sp = int8.get("speedup") if int8 else None
    goal: dict[str, Any] = {
        "goal": "pruned+INT8 speed-up vs BERT-base FP32 (CPU)",
        "target": f">= {GOAL_INT8_SPEEDUP:.1f}x",
        "measured": f"{sp:.2f}x" if sp else "not measured",
        "met": None if sp is None else sp >= GOAL_INT8_SPEEDUP,
    }
    goal["gap"] = (
        f"short by {GOAL_INT8_SPEEDUP - sp:.2f}x ({sp / GOAL_INT8_SPEEDUP:.0%} of the goal)"
        if goal["met"] is False and sp
        else ""
    )
    goals.append(goal)

    drop = None
    if acc_fp32_6l is not None and acc_int8 is not None:
        drop = round((acc_fp32_6l - acc_int8) * 100, 2)
    goal = {
        "goal": "accuracy drop, pruned+INT8 vs FP32 6L (trained local models)",
        "target": f"<= {GOAL_MAX_ACC_DROP_POINTS} points",
        "measured": "not measured" if drop is None else f"{drop:+.2f} points",
        "met": None if drop is None else drop <= GOAL_MAX_ACC_DROP_POINTS,
    }
    goal["gap"] = (
        f"over by {drop - GOAL_MAX_ACC_DROP_POINTS:.2f} points"
        if goal["met"] is False and drop is not None
        else ""
    )
    goals.append(goal)

    ort = _row(rows, ORT_INT8)
    p_ms = int8["timing"]["batch_ms"] if int8 and int8.get("timing") else None
    o_ms = ort["timing"]["batch_ms"] if ort and ort.get("timing") else None
    goal = {
        "goal": "Paddle INT8 faster than onnxruntime INT8 (same pruned model)",
        "target": "Paddle ms < ORT ms",
        "measured": (
            f"Paddle {p_ms:.0f} ms vs ORT {o_ms:.0f} ms" if p_ms and o_ms else "not measured"
        ),
        "met": None if not (p_ms and o_ms) else p_ms < o_ms,
    }
    goal["gap"] = (
        f"Paddle is {p_ms / o_ms:.2f}x slower (+{p_ms - o_ms:.0f} ms/batch)"
        if goal["met"] is False and p_ms and o_ms
        else ""
    )
    goals.append(goal)
    return goals


def _fmt_acc(row: Mapping[str, Any]) -> str:
    acc = row.get("accuracy")
    if acc is None:
        return row.get("accuracy_note", "n/a")
    return f"{acc * 100:.2f}{row.get('accuracy_mark', '')}"


def format_row(row: Mapping[str, Any]) -> list[str]:
    """Table cells of one row (a row without timing shows its ``error``)."""
    timing = row.get("timing")
    if timing:
        lat = f"{timing['batch_ms']:.1f}"
        p95 = f"{timing['latency_ms']['p95']:.1f}"
        thr = f"{timing['throughput']:.1f}"
    else:
        lat = p95 = thr = f"not run: {row.get('error', '?')}"
    sp = row.get("speedup")
    return [
        row["model"],
        row["engine"],
        format_count(row["params"], "M") if row.get("params") else "",
        format_count(row["flops"], "B") if row.get("flops") else "",
        lat,
        p95,
        thr,
        f"{sp:.2f}x" if sp else "",
        _fmt_acc(row),
        row.get("int8_note", ""),
    ]


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The bench table (one line per row, every column of :data:`COLUMNS`)."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if i < 2 or i == 9 else "---:" for i in range(len(COLUMNS))) + "|",
    ]
    for row in rows:
        cells = [c.replace("|", "/") for c in format_row(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_markdown(goals: Sequence[Mapping[str, Any]]) -> str:
    """The goal verdicts as a Markdown table."""
    lines = ["| goal | target | measured | verdict |", "|---|---|---|---|"]
    for g in goals:
        verdict = {True: "met", False: f"MISSED: {g['gap']}", None: "not measured"}[g["met"]]
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {verdict} |")
    return "\n".join(lines)
