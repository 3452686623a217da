"""Bench rows -> speed-ups, goal verdicts and the Markdown table (pure functions, no paddle)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.variants import PEER_INT8
from ppminilm.modeling.accounting import format_count

#: Goals from the issue.
GOAL_INT8_SPEEDUP = 6.0  # pruned+INT8 vs BERT-base FP32, CPU
GOAL_MAX_ACC_DROP_POINTS = 0.5  # pruned+INT8 vs FP32 6L, accuracy points
#: Row keys the goals compare (pruned-model rows are keyed by their variant).
PADDLE_INT8 = "paddle_int8"
#: The INT8 rows the pipeline's ``engine='auto'`` chooses among (each engine's default INT8
#: path: ours for Paddle, NNCF for OpenVINO, static QDQ for onnxruntime).
AUTO_CANDIDATES = {"paddle": "paddle_int8", "openvino": "ov_int8", "onnxruntime": "ort_int8_static"}

COLUMNS = (
    "model",
    "engine / precision",
    "params",
    "FLOPs",
    "latency ms/batch",
    "spread %",
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
    """Verdicts for the goals, each with what was measured and by how much it missed.

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

    goals.append(peer_goal(rows, PEER_INT8))
    goals.append(deploy_goal(rows))
    return goals


def _ms(row: Mapping[str, Any] | None) -> float | None:
    return row["timing"]["batch_ms"] if row and row.get("timing") else None


def peer_goal(rows: Sequence[Mapping[str, Any]], peers: Sequence[str]) -> dict[str, Any]:
    """Paddle INT8 (our PTQ) vs the fastest peer INT8 row: met when Paddle is at least as fast
    at equal or better accuracy."""
    ours = _row(rows, PADDLE_INT8)
    timed = [r for r in rows if r["key"] in peers and _ms(r)]
    goal: dict[str, Any] = {
        "goal": "Paddle INT8 (our PTQ) vs fastest peer INT8",
        "target": "Paddle ms <= peer ms at equal or better accuracy",
        "measured": "not measured",
        "met": None,
        "gap": "",
    }
    p_ms = _ms(ours)
    if not (p_ms and timed and ours):
        return goal
    fastest = min(timed, key=lambda r: r["timing"]["batch_ms"])
    o_ms = fastest["timing"]["batch_ms"]
    p_acc, o_acc = ours.get("accuracy"), fastest.get("accuracy")
    acc_text = (
        f" (acc {p_acc * 100:.2f} vs {o_acc * 100:.2f})"
        if p_acc is not None and o_acc is not None
        else ""
    )
    goal["measured"] = f"Paddle {p_ms:.0f} ms vs {fastest['engine']} {o_ms:.0f} ms{acc_text}"
    goal["peer"] = fastest["key"]
    goal["peer_engine"] = fastest["engine"]
    goal["peer_int8"] = fastest.get("int8_note", "")
    faster = p_ms <= o_ms
    accurate = p_acc is None or o_acc is None or p_acc >= o_acc
    goal["met"] = faster and accurate
    if not faster:
        goal["gap"] = f"Paddle is {p_ms / o_ms:.2f}x slower (+{p_ms - o_ms:.0f} ms/batch)"
    elif not accurate:
        goal["gap"] = f"as fast, but {(o_acc - p_acc) * 100:.2f} points less accurate"
    return goal


def deploy_goal(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The engine the pipeline's CPU branch would deploy for its INT8 row (``engine='auto'``:
    the fastest of :data:`AUTO_CANDIDATES` within the accuracy budget of Paddle's)."""
    from ppminilm.inference.engines.select import MAX_ACC_DROP_POINTS, choose_engine

    results = {}
    for engine, key in AUTO_CANDIDATES.items():
        row = _row(rows, key)
        if _ms(row) and row and row.get("accuracy") is not None:
            results[engine] = {
                "total_s": row["timing"]["batch_ms"] / 1e3,
                "accuracy": row["accuracy"],
            }
    goal: dict[str, Any] = {
        "goal": "engine the pipeline deploys (CPU INT8 row, engine='auto')",
        "target": f"fastest INT8 within {MAX_ACC_DROP_POINTS} points of Paddle's accuracy",
        "measured": "not measured",
        "met": None,
        "gap": "",
    }
    if not results:
        return goal
    best, reason = choose_engine(results)
    row = _row(rows, AUTO_CANDIDATES[best])
    assert row is not None
    ms, acc = row["timing"]["batch_ms"], row["accuracy"] * 100
    goal.update(
        measured=f"{row['engine']}: {ms:.0f} ms, acc {acc:.2f}",
        met=True,
        engine=best,
        verdict=f"deploys {best}",
        reason=reason,
    )
    return goal


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
        spread = f"{timing.get('spread_pct', 0):.0f}"
        p95 = f"{timing['latency_ms']['p95']:.1f}"
        thr = f"{timing['throughput']:.1f}"
    else:
        lat = f"not run: {row.get('error', '?')}"
        spread = p95 = thr = ""
    sp = row.get("speedup")
    return [
        row["model"],
        row["engine"],
        format_count(row["params"], "M") if row.get("params") else "",
        format_count(row["flops"], "B") if row.get("flops") else "",
        lat,
        spread,
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
        "|"
        + "|".join("---" if i < 2 or i == len(COLUMNS) - 1 else "---:" for i in range(len(COLUMNS)))
        + "|",
    ]
    for row in rows:
        cells = [c.replace("|", "/") for c in format_row(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_markdown(goals: Sequence[Mapping[str, Any]]) -> str:
    """The goal verdicts as a Markdown table."""
    lines = ["| goal | target | measured | verdict |", "|---|---|---|---|"]
    for g in goals:
        verdict = (
            g.get("verdict")
            or {
                True: "met",
                False: f"MISSED: {g['gap']}",
                None: "not measured",
            }[g["met"]]
        )
        lines.append(f"| {g['goal']} | {g['target']} | {g['measured']} | {verdict} |")
    return "\n".join(lines)
