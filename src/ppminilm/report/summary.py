"""Assemble the report's run summary from the pipeline's per-task benchmark results.

Each task contributes one merged result (``{"task", "rows"}``, rows = the benchmark JSONs of
the fine-tuned FP32, pruned FP32 and pruned INT8 models, in that order). Rows carry their
model's lineage (grid search, pruning and quantization summaries) from ``provenance.json``.
The output follows the schema in :mod:`ppminilm.report.render`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.compat.versions import package_versions
from ppminilm.contracts import LOSS_CURVE_FILE
from ppminilm.io import read_json_file
from ppminilm.report.schema import ReportError


def _model_row(name: str, per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One report row from the same model type's results on every task."""
    first = next(iter(per_task.values()))
    latency = first.get("latency_ms", {})
    row: dict[str, Any] = {
        "name": name,
        "arch": first.get("arch") or {},
        "params": int(first["params"]),
        "flops": int(first["flops"]),
        "precision": first.get("precision", "fp32"),
        "latency": {
            "total_s": float(first["total_s"]),
            "p50_ms": float(latency.get("p50", 0.0)) or None,
            "p95_ms": float(latency.get("p95", 0.0)) or None,
        },
        "throughput": float(first.get("throughput", 0.0)) or None,
        "accuracy": {task: float(r["accuracy"]) for task, r in per_task.items()},
    }
    check = first.get("int8_check")
    if row["precision"] == "int8" and isinstance(check, Mapping):
        row["int8_kernels"] = bool(check.get("int8_kernels", check.get("runs_int8", False)))
    return row


def _grid(merged: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in merged:
        grid = m["rows"][0].get("lineage", {}).get("grid", [])
        out[m["task"]] = [
            {
                "batch_size": int(g["batch_size"]),
                "learning_rate": float(g["learning_rate"]),
                "dev_acc": float(g["best_dev_acc"]),
            }
            for g in grid
        ]
    return {k: v for k, v in out.items() if v}


def _quantization(merged: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in merged:
        quant = m["rows"][-1].get("lineage", {}).get("quantize", {})
        best = quant.get("best", {})
        for c in quant.get("candidates", []):
            out.append(
                {
                    "task": m["task"],
                    "algo": str(c["algo"]),
                    "batch_num": int(c["batch_num"]),
                    "acc": float(c["dev_acc"]),
                    "selected": c.get("algo") == best.get("algo")
                    and c.get("batch_num") == best.get("batch_num"),
                }
            )
    return out


def _distill_loss(student_dir: Path | None) -> list[dict[str, float]]:
    if student_dir is None or not (student_dir / LOSS_CURVE_FILE).is_file():
        return []
    curve = read_json_file(student_dir / LOSS_CURVE_FILE, ReportError)
    return [{"step": int(p["step"]), "loss": float(p["loss"])} for p in curve]


def run_summary_from_results(
    merged: Sequence[Mapping[str, Any]],
    *,
    student_dir: Path | None = None,
    profile: str = "local",
) -> dict[str, Any]:
    """Build the report's run summary.

    Args:
        merged: One ``{"task", "rows"}`` per task (rows in the same model order for all).
        student_dir: The distilled student's directory (for the loss curve), if any.
        profile: Profile name, shown in the report.

    Returns:
        The run summary (see :mod:`ppminilm.report.render`).

    Raises:
        ValueError: If there are no results or tasks disagree on the model rows.
    """
    if not merged:
        raise ValueError("no benchmark results to report")
    names = [r["name"] for r in merged[0]["rows"]]
    for m in merged[1:]:
        if [r["name"] for r in m["rows"]] != names:
            raise ValueError(
                f"task {m['task']!r} has model rows {[r['name'] for r in m['rows']]}"
                f", expected {names}"
            )
    tasks = [m["task"] for m in merged]
    models = [
        _model_row(name, {m["task"]: m["rows"][i] for m in merged}) for i, name in enumerate(names)
    ]
    first = merged[0]["rows"][0]
    return {
        "title": f"PP-MiniLM compression report ({profile} profile)",
        "tasks": tasks,
        "benchmark": {
            "task": merged[0]["task"],
            "split": first.get("split", "dev"),
            "batch_size": int(first.get("batch_size", 0)) or None,
            "max_seq_len": int(first.get("max_seq_len", 0)) or None,
        },
        "models": models,
        "grid": _grid(merged),
        "quantization": _quantization(merged),
        "distill_loss": _distill_loss(student_dir),
        "environment": {
            "cpu": str(first.get("cpu", "")),
            "device": str(first.get("device", "cpu")),
            "threads": int(first.get("threads", os.cpu_count() or 1)),
            "profile": profile,
            "versions": package_versions(),
        },
    }
