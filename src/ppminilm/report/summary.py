"""Assemble the report's run summary from the pipeline's per-task results.

Each task contributes a :class:`~ppminilm.contracts.TaskResults`: the benchmark rows of the
fine-tuned FP32 model and, per pruned width, its FP32 and INT8 sub-models (accuracy, latency,
INT8 check, lineage), the interleaved timing of those rows plus the speed baseline, and the
compression search's choice among them. Rows are named for what they
are: on the local profile a ``local 6L-64H student``, never "PP-MiniLM".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.compat.versions import package_versions
from ppminilm.config import ModelArch, bert_base_arch
from ppminilm.contracts import LOSS_CURVE_FILE, STAGE_SUMMARY_FILE, StageSummary, TaskResults
from ppminilm.io import read_json_file
from ppminilm.modeling.accounting import count_flops, count_params
from ppminilm.report.schema import (
    GridCell,
    LossPoint,
    ModelRow,
    QuantRow,
    ReportError,
    RunSummary,
    Speed,
)

#: Row key of the speed baseline in a timing result.
BASELINE = "baseline"


def shape(arch: Mapping[str, Any]) -> str:
    """``6L-768H`` (plus `` width 0.75`` for a pruned shape)."""
    text = f"{arch.get('num_layers', '?')}L-{arch.get('hidden_size', '?')}H"
    width = float(arch.get("width", 1.0))
    return text + (f" width {width:g}" if width < 1.0 else "")


def row_name(key: str, arch: Mapping[str, Any], precision: str, profile: str) -> str:
    """An honest row name: what the model is, at which precision.

    The baseline is BERT-base on the cluster profile (the seed's 1.00x row) and the local
    teacher's shape locally; the local models are tiny students, named as such.
    """
    label = precision.upper()
    if key == BASELINE:
        full = ModelArch.from_dict(dict(arch)).to_dict() if arch else {}
        if full and {**full, "vocab_size": 0} == {**bert_base_arch().to_dict(), "vocab_size": 0}:
            return f"BERT-base {shape(arch)} {label} (random weights)"
        role = "teacher shape" if profile == "local" else "baseline"
        return f"{shape(arch)} {role} {label} (random weights)"
    prefix = "local " if profile == "local" else "PP-MiniLM "
    student = " student" if profile == "local" and float(arch.get("width", 1.0)) == 1.0 else ""
    return f"{prefix}{shape(arch)}{student} {label}"


def _speed(task: TaskResults, key: str) -> Speed | None:
    if task.timing is None or key not in task.timing.rows:
        return None
    t = task.timing.rows[key]
    return Speed(
        seconds_per_pass=t.median_s, speedup=t.speedup, low=t.speedup_low, high=t.speedup_high
    )


def _model_rows(merged: Sequence[TaskResults], profile: str) -> list[ModelRow]:
    first = merged[0]
    seq_len = first.rows[0].max_seq_len
    rows: list[ModelRow] = []
    if first.timing is not None and BASELINE in first.timing.rows:
        arch = dict(first.timing.rows[BASELINE].arch)
        full = ModelArch.from_dict(arch)
        rows.append(
            ModelRow(
                key=BASELINE,
                name=row_name(BASELINE, arch, "fp32", profile),
                params=count_params(full),
                flops=count_flops(full, seq_len),
                accuracy={},
                arch=arch,
                speed=_speed(first, BASELINE),
                note="random weights, accuracy not measured",
            )
        )
    for i, bench in enumerate(first.rows):
        arch = dict(bench.arch)
        full = ModelArch.from_dict(arch)
        check = bench.int8_check
        rows.append(
            ModelRow(
                key=bench.name,
                name=row_name(bench.name, arch, bench.precision, profile),
                params=count_params(full),
                flops=count_flops(full, seq_len),
                accuracy={m.task: m.rows[i].accuracy for m in merged},
                precision=bench.precision,
                arch=arch,
                speed=_speed(first, bench.name),
                latency_p50_ms=bench.latency_ms.p50,
                latency_p95_ms=bench.latency_ms.p95,
                throughput=bench.throughput,
                int8_kernels=bool(check.get("runs_int8")) if bench.precision == "int8" else None,
                test_accuracy={
                    m.task: float(acc)
                    for m in merged
                    if (acc := m.rows[i].test_accuracy) is not None
                },
            )
        )
    return rows


def _grid(merged: Sequence[TaskResults]) -> dict[str, Sequence[GridCell]]:
    out: dict[str, Sequence[GridCell]] = {}
    for m in merged:
        grid = m.rows[0].lineage.grid
        if grid:
            out[m.task] = [
                GridCell(
                    batch_size=g.batch_size, learning_rate=g.learning_rate, dev_acc=g.best_dev_acc
                )
                for g in grid
            ]
    return out


def _quantization(merged: Sequence[TaskResults]) -> list[QuantRow]:
    """Every PTQ candidate of every INT8 row (one PTQ search per pruned width)."""
    out = []
    for m in merged:
        for row in m.rows:
            if row.precision != "int8":
                continue
            quant = row.lineage.quantize
            best = quant.get("best", {})
            key = ("algo", "batch_size", "batch_num")
            for c in quant.get("candidates", []):
                out.append(
                    QuantRow(
                        task=m.task,
                        algo=str(c["algo"]),
                        batch_size=int(c.get("batch_size", 0)),
                        batch_num=int(c["batch_num"]),
                        acc=float(c["dev_acc"]),
                        selected=all(c.get(k) == best.get(k) for k in key),
                        width=float(row.arch.get("width", 1.0)),
                    )
                )
    return out


def _majority(merged: Sequence[TaskResults]) -> dict[str, float]:
    out = {}
    for m in merged:
        finetune = m.rows[0].lineage.finetune
        if finetune is not None and finetune.majority_acc:
            out[m.task] = finetune.majority_acc
    return out


def _distill_loss(student_dir: Path | None) -> list[LossPoint]:
    if student_dir is None or not (student_dir / LOSS_CURVE_FILE).is_file():
        return []
    curve = read_json_file(student_dir / LOSS_CURVE_FILE, ReportError)
    return [LossPoint(step=int(p["step"]), loss=float(p["loss"])) for p in curve]


def _teacher(teacher_dir: Path | None) -> dict[str, Any]:
    """The teacher's pre-training quality, when this run trained it."""
    if teacher_dir is None or not (teacher_dir / STAGE_SUMMARY_FILE).is_file():
        return {}
    result = StageSummary.read(teacher_dir).result
    if "final_loss" not in result:  # imported, not trained here
        return {"source": str(result.get("imported", "pretrained"))}
    keys = ("final_loss", "final_mlm_accuracy", "steps", "params", "seconds", "cached")
    return {k: result[k] for k in keys if k in result}


def run_summary_from_results(
    merged: Sequence[TaskResults],
    *,
    student_dir: Path | None = None,
    teacher_dir: Path | None = None,
    profile: str = "local",
) -> RunSummary:
    """Build the report's run summary.

    Args:
        merged: One result per task (benchmark rows in the same model order for all).
        student_dir: The distilled student's directory (for the loss curve), if any.
        teacher_dir: The teacher's directory (for its pre-training quality), if any.
        profile: Profile name, shown in the report.

    Returns:
        The run summary.

    Raises:
        ReportError: If there are no results or tasks disagree on the model rows.
    """
    if not merged:
        raise ReportError("no benchmark results to report")
    names = [r.name for r in merged[0].rows]
    for m in merged[1:]:
        if [r.name for r in m.rows] != names:
            raise ReportError(
                f"task {m.task!r} has model rows {[r.name for r in m.rows]}, expected {names}"
            )
    first = merged[0]
    bench = first.rows[0]
    timing = first.timing
    return RunSummary(
        title=f"PP-MiniLM compression report ({profile} profile)",
        profile=profile,
        tasks=tuple(m.task for m in merged),
        models=tuple(_model_rows(merged, profile)),
        seq_len=bench.max_seq_len,
        batch_size=bench.batch_size,
        split=bench.split,
        timing=(
            f"timed on {first.task} {bench.split} ({timing.examples} examples, batch "
            f"{timing.batch_size}, {timing.device}): "
            f"{timing.description}"
            if timing is not None
            else ""
        ),
        majority=_majority(merged),
        teacher=_teacher(teacher_dir),
        grid=_grid(merged),
        quantization=tuple(_quantization(merged)),
        distill_loss=tuple(_distill_loss(student_dir)),
        search={m.task: m.selection for m in merged if m.selection is not None},
        environment={
            "cpu": bench.cpu,
            "device": bench.device,
            "threads": bench.threads or os.cpu_count() or 1,
            "profile": profile,
            "versions": package_versions(),
        },
    )
