"""Runner steps of stage 5: benchmark one model, merge a task's rows, report, run status."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import InferConfig, ModelArch, resolve
from ppminilm.contracts import (
    BenchmarkResult,
    Confusion,
    ContractError,
    StageSummary,
    TaskResults,
    TimingResult,
    candidate_key,
)
from ppminilm.errors import UserError
from ppminilm.io import atomic_write, atomic_write_json, atomic_write_text, read_json_file
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
    task = task or serving.task or None
    task_dir = resolve_task_dir(data, task)
    given = {"device": device, "precision": serving.precision, **fields}
    if device == "cpu":
        given["use_trt"] = False
    cfg = resolve(InferConfig, profile, overrides, task=task, **given)
    target = Path(out)
    with tempfile.TemporaryDirectory(prefix="ppminilm-bench-") as work:
        # A labelled test split (the local tasks) is scored here too, on the engine the row
        # reports, after every selection: nothing upstream of this step saw it.
        result = benchmark_row(
            model,
            task_dir,
            cfg,
            reference,
            deploy,
            split=split,
            work_dir=work,
            test_split="test" if split == "dev" else None,
        )
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
    confusion = _named(result.confusion_matrix, result.task, task_dir)
    return summarize("benchmark", row, profile=profile, cfg=cfg, confusion=confusion)


def _named(confusion: Confusion, task: str, task_dir: Path) -> Confusion:
    """The confusion matrix with readable label names (the KFP UI shows them as given)."""
    from ppminilm.data import task_spec

    spec = task_spec(task, task_dir)
    return confusion.replace(labels=[spec.display(label) for label in confusion.labels])


#: Key of the speed baseline row in a timing result.
BASELINE_ROW = "baseline"


@stage(
    "time-rows",
    InferConfig,
    metrics=("rows", "fastest_speedup"),
    metadata=("task", "baseline_arch", "fastest"),
)
def time_rows(
    data: str | Path,
    models: Mapping[str, str | Path] | Sequence[str | Path],
    out: str | Path,
    *,
    task: str | None = None,
    device: str = "cpu",
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> StageSummary:
    """Time the speed baseline and every model of a task interleaved (the report's speed).

    Args:
        data: A task directory or the data artifact.
        models: Row name -> inference model, or a list of inference models each named by its
            search candidate key (``6L-w0.75-int8``, :func:`~ppminilm.contracts.candidate_key`,
            from its ``serving.json``); in report order (the first one's tokenizer and labels
            encode the split for every row).
        out: The result file (a :class:`~ppminilm.contracts.TimingResult` JSON).
        task: Task name (default: the first model's).
        device: ``cpu`` or ``gpu``.
        profile: Profile name.
        overrides: Stage-keyed overrides (``infer.timing``, ``infer.baseline``...).
        **fields: ``InferConfig`` fields.
    """
    from ppminilm.inference.benchmark import encode_labelled_split
    from ppminilm.inference.cpuinfo import cpu_model
    from ppminilm.inference.engines import open_engine
    from ppminilm.inference.timing import build_speed_baseline, time_interleaved, timed_rows
    from ppminilm.modeling.export import read_serving_config
    from ppminilm.training.loop import iterate_batches

    if not models:
        raise UserError("time-rows needs at least one model")
    models = _named_rows(models)
    first = Path(next(iter(models.values())))
    serving = read_serving_config(first)
    task = task or serving.task or None
    task_dir = resolve_task_dir(data, task)
    given = {"device": device, **fields}
    if device == "cpu":
        given["use_trt"] = False
    cfg = resolve(InferConfig, profile, overrides, task=task, **given)
    name, arrays, _ = encode_labelled_split(first, serving, task_dir, "dev", cfg.max_seq_len)
    batches = list(iterate_batches({k: arrays[k] for k in serving.input_names}, cfg.batch_size))
    vocab = int(serving.arch.get("vocab_size", cfg.baseline.vocab_size))
    baseline_arch = cfg.baseline.replace(vocab_size=vocab)
    # The timing step's own thread count (TimingConfig.threads; 0: as the benchmarks ran).
    threads = cfg.timing.threads or cfg.num_threads
    with tempfile.TemporaryDirectory(prefix="ppminilm-timing-") as work:
        base_dir = build_speed_baseline(
            baseline_arch, list(serving.labels), serving.max_seq_len, first, Path(work) / "base"
        )
        dirs = {BASELINE_ROW: base_dir, **{k: Path(v) for k, v in models.items()}}
        details, runs = {}, {}
        for row, model_dir in dirs.items():
            row_serving = read_serving_config(model_dir)
            # Each row runs on the engine its serving.json names (the INT8 row's may be a CPU
            # peer chosen by the benchmark), at its own precision.
            row_cfg = cfg.replace(
                precision=row_serving.precision, engine=row_serving.engine, num_threads=threads
            )
            predictor = open_engine(model_dir, row_cfg)
            details[row] = {
                "precision": row_serving.precision,
                "arch": row_serving.arch,
                "engine": row_serving.engine,
            }
            runs[row] = _dev_pass(predictor, batches)
        logger.info("timing %d rows on %s: %s", len(runs), name, cfg.timing.describe(threads))
        rows = timed_rows(time_interleaved(runs, cfg.timing), BASELINE_ROW, details)
    result = TimingResult(
        task=name,
        baseline=BASELINE_ROW,
        rows=rows,
        protocol=cfg.timing.to_dict(),
        description=cfg.timing.describe(threads),
        device=cfg.device,
        cpu=cpu_model(),
        threads=threads,
        batch_size=cfg.batch_size,
        max_seq_len=cfg.max_seq_len,
        examples=len(arrays["input_ids"]),
    )
    atomic_write_json(out, result.to_dict())
    for row, timed in rows.items():
        logger.info(
            "%-10s %.3f s/pass  %.2fx (%.2f-%.2f)",
            row,
            timed.median_s,
            timed.speedup,
            timed.speedup_low,
            timed.speedup_high,
        )
    speedups = {row: timed.speedup for row, timed in rows.items() if row != BASELINE_ROW}
    fastest = max(speedups, key=lambda row: speedups[row])
    arch_name = f"{baseline_arch.num_layers}L-{baseline_arch.hidden_size}H"
    return summarize(
        "time-rows",
        {
            "task": name,
            "baseline_arch": arch_name,
            "rows": len(speedups),
            "speedups": speedups,
            "fastest": fastest,
            "fastest_speedup": speedups[fastest],
        },
        profile=profile,
        cfg=cfg,
    )


def _named_rows(models: Mapping[str, str | Path] | Sequence[str | Path]) -> dict[str, Path]:
    """Row name -> model dir; a list is named by each model's search candidate key.

    Raises:
        UserError: If two models of a list are the same candidate, or a row is the baseline.
    """
    from ppminilm.modeling.export import read_serving_config

    if isinstance(models, Mapping):
        named = {str(k): Path(v) for k, v in models.items()}
    else:
        named = {}
        for path in models:
            serving = read_serving_config(path)
            key = candidate_key(serving.arch or {"width": serving.width}, serving.precision)
            if key in named:
                raise UserError(f"time-rows: {path} and {named[key]} are both candidate {key!r}")
            named[key] = Path(path)
    if BASELINE_ROW in named:
        raise UserError(f"time-rows: row name {BASELINE_ROW!r} is the speed baseline's")
    return named


def _dev_pass(predictor: Any, batches: Sequence[Mapping[str, Any]]) -> Callable[[], None]:
    def run() -> None:
        for batch in batches:
            predictor.run(batch)

    return run


def read_result(path: str | Path) -> BenchmarkResult:
    """Read a benchmark result JSON (a file, or a KFP artifact path).

    Raises:
        ContractError: If the file is missing or does not match the contract.
    """
    return BenchmarkResult.from_dict(read_json_file(path, ContractError), where=str(path))


@stage("merge-results")
def merge_results(
    results: Sequence[str | Path], out: str | Path, *, timing: str | Path | None = None
) -> StageSummary:
    """Merge one task's benchmark results (in report order) and its timing into one file."""
    merged = TaskResults.of([read_result(p) for p in results])
    if timing is not None:
        merged.timing = TimingResult.from_dict(
            read_json_file(timing, ContractError), where=str(timing)
        )
        if merged.timing.task != merged.task:
            raise ContractError(
                f"{timing}: timing of task {merged.timing.task!r}, not {merged.task!r}"
            )
    atomic_write_json(out, merged.to_dict())
    return summarize("merge-results", {"task": merged.task, "rows": len(merged.rows)}, profile="")


@stage(
    "report",
    metrics=(
        "avg_dev_acc",
        "best_avg_dev_acc",
        "speedup",
        "params_millions",
        "avg_drop_points",
        "kept_fp32_tasks",
    ),
)
def report(
    results: Sequence[str | Path],
    *,
    student: str | Path | None = None,
    teacher: str | Path | None = None,
    markdown: str | Path,
    html: str | Path,
    summary: str | Path,
    bundle: str | Path | None = None,
    profile: str = "local",
) -> StageSummary:
    """Build the run report from every task's results.

    Args:
        results: One ``TaskResults`` file per task.
        student: The distillation step's output (for the loss curve), if any.
        teacher: The teacher step's output (for its pre-training quality), if any.
        markdown: Where the Markdown report goes, plots inlined (one file for the KFP UI).
        html: Where the self-contained HTML report goes.
        summary: Where the run summary JSON goes.
        bundle: Where the report directory goes: ``report.md`` with ``plots/*.png`` beside
            it, ``report.html``, ``report.json``.
        profile: Profile name, shown in the report.
    """
    from ppminilm.report.render import build_report, headline_metrics, inline_markdown_images
    from ppminilm.report.summary import run_summary_from_results

    merged = [
        TaskResults.from_dict(read_json_file(p, ContractError), where=str(p)) for p in results
    ]
    run_summary = run_summary_from_results(
        merged,
        student_dir=Path(student) if student is not None else None,
        teacher_dir=Path(teacher) if teacher is not None else None,
        profile=profile,
    )
    with tempfile.TemporaryDirectory(prefix="ppminilm-report-") as work:
        target = Path(bundle) if bundle is not None else Path(work) / "report"
        paths = build_report(run_summary, target)
        atomic_write_text(markdown, inline_markdown_images(paths["markdown"]))
        atomic_write(html, lambda tmp: shutil.copyfile(paths["html"], tmp))
    atomic_write_json(summary, run_summary.to_dict())
    logger.info("report written: %s", bundle or markdown)
    headline = headline_metrics(run_summary)
    return summarize("report", {"tasks": [m.task for m in merged], **headline}, profile=profile)


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


__all__ = ["benchmark", "merge_results", "read_result", "record_status", "report", "time_rows"]
