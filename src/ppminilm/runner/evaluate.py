"""Runner steps of stage 5: benchmark one model, merge a task's rows, report, run status."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import InferConfig, ModelArch, resolve
from ppminilm.contracts import (
    BenchmarkResult,
    ContractError,
    StageSummary,
    TaskResults,
)
from ppminilm.io import atomic_write_json, atomic_write_text, read_json_file
from ppminilm.runner.core import resolve_task_dir, stage, summarize

logger = logging.getLogger(__name__)


@stage(
    "benchmark",
    InferConfig,
    metrics=("accuracy", "throughput", "total_s", "latency_p50_ms", "latency_p95_ms"),
    metadata=("task", "name", "precision", "engine"),
)
def benchmark(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    name: str = "",
    device: str = "cpu",
    split: str = "dev",
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    reference: str | Path | None = None,
    deploy: str | Path | None = None,
    **fields: Any,
) -> StageSummary:
    """Benchmark an inference model on a task's split; writes the result JSON to ``out``.

    Args:
        data: A task directory or the data artifact.
        model: The static inference model (FP32 or INT8; its precision is used).
        out: The result file (a :class:`~ppminilm.contracts.BenchmarkResult` JSON).
        task: Task name (default: the model's ``serving.json``).
        name: Row name in the report (e.g. ``pruned INT8``).
        device: ``cpu`` or ``gpu``.
        split: Labelled split to time and score.
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"infer": {...}}``).
        reference: The FP32 model a CPU peer engine quantizes itself (INT8 rows, ``engine``
            a peer or ``auto``: :func:`ppminilm.inference.engines.select.benchmark_row`).
        deploy: If given, gets the model the reported engine ran (``serving.json`` names it).
        **fields: ``InferConfig`` fields (``engine``: paddle, openvino, onnxruntime, auto).
    """
    from ppminilm.inference.engines.select import benchmark_row
    from ppminilm.modeling.accounting import count_flops, count_params
    from ppminilm.modeling.export import read_serving_config
    from ppminilm.modeling.saved import read_lineage

    serving = read_serving_config(model)
    task_dir = resolve_task_dir(data, task or serving.task or None)
    given = {"device": device, "precision": serving.precision, **fields}
    if device == "cpu":
        given["use_trt"] = False
    cfg = resolve(InferConfig, profile, overrides, **given)
    target = Path(out)
    with tempfile.TemporaryDirectory(prefix="ppminilm-bench-") as work:
        result = benchmark_row(model, task_dir, cfg, reference, deploy, split=split, work_dir=work)
    arch = ModelArch.from_dict(serving.arch) if serving.arch else None
    result = result.replace(
        name=name or Path(model).name,
        arch=serving.arch,
        params=count_params(arch) if arch else None,
        flops=count_flops(arch) if arch else None,
        lineage=read_lineage(model),
    )
    atomic_write_json(target, result.to_dict())
    row = {
        **{k: v for k, v in result.to_dict().items() if k not in ("lineage", "config")},
        "latency_p50_ms": result.latency_ms.p50,
        "latency_p95_ms": result.latency_ms.p95,
    }
    return summarize("benchmark", row, profile=profile, cfg=cfg, confusion=result.confusion_matrix)


def read_result(path: str | Path) -> BenchmarkResult:
    """Read a benchmark result JSON (a file, or a KFP artifact path).

    Raises:
        ContractError: If the file is missing or does not match the contract.
    """
    return BenchmarkResult.from_dict(read_json_file(path, ContractError), where=str(path))


@stage("merge-results")
def merge_results(results: Sequence[str | Path], out: str | Path) -> StageSummary:
    """Merge one task's benchmark results (in report order) into one ``TaskResults`` file."""
    merged = TaskResults.of([read_result(p) for p in results])
    atomic_write_json(out, merged.to_dict())
    return summarize("merge-results", {"task": merged.task, "rows": len(merged.rows)}, profile="")


@stage("report")
def report(
    results: Sequence[str | Path],
    *,
    student: str | Path | None = None,
    markdown: str | Path,
    html: str | Path,
    summary: str | Path,
    profile: str = "local",
) -> StageSummary:
    """Build the run report (Markdown + HTML + run-summary JSON) from every task's results.

    Args:
        results: One ``TaskResults`` file per task.
        student: The distillation step's output (for the loss curve), if any.
        markdown: Where the Markdown report goes.
        html: Where the self-contained HTML report goes.
        summary: Where the run summary JSON goes.
        profile: Profile name, shown in the report.
    """
    from ppminilm.report.render import build_report, inline_markdown_images
    from ppminilm.report.summary import run_summary_from_results

    merged = [
        TaskResults.from_dict(read_json_file(p, ContractError), where=str(p)) for p in results
    ]
    student_dir = Path(student) if student is not None else None
    run_summary = run_summary_from_results(
        [m.to_dict() for m in merged], student_dir=student_dir, profile=profile
    )
    with tempfile.TemporaryDirectory(prefix="ppminilm-report-") as work:
        paths = build_report(run_summary, Path(work) / "report")
        atomic_write_text(markdown, inline_markdown_images(paths["markdown"]))
        shutil.copyfile(paths["html"], html)
    atomic_write_json(summary, run_summary)
    logger.info("report written: %s (%s)", markdown, html)
    return summarize("report", {"tasks": [m.task for m in merged]}, profile=profile)


@stage("record-status")
def record_status(
    out: str | Path, *, state: str, job: str = "", error_code: Any = None, error_message: str = ""
) -> StageSummary:
    """Exit handler: record the run's final state as JSON."""
    record = {
        "state": state,
        "pipeline_job": job,
        "error_code": error_code,
        "error_message": error_message,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(out, record)
    level = logging.INFO if state == "SUCCEEDED" else logging.ERROR
    logger.log(level, "pipeline finished: %s %s", state, error_message or "")
    return summarize("record-status", record, profile="")


__all__ = ["benchmark", "merge_results", "read_result", "record_status", "report"]
