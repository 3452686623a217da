"""Runner steps of stage 2: fine-tune one grid point, the whole grid, select the best, export."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import DistillConfig, FinetuneConfig, GridConfig, ModelArch, resolve
from ppminilm.contracts import (
    GRID_MD,
    STAGE_SUMMARY_FILE,
    FinetuneResult,
    Lineage,
    StageSummary,
)
from ppminilm.errors import UserError
from ppminilm.io import atomic_write_text, copy_dir
from ppminilm.runner.core import resolve_task_dir, stage, summarize, task_of

logger = logging.getLogger(__name__)

_FINETUNE_METRICS = ("best_dev_acc", "majority_acc", "best_step", "steps", "seconds")


def scratch_arch(profile: str, overrides: Mapping[str, Any] | None = None) -> ModelArch:
    """The profile's distillation student: what ``--init scratch`` is compared against."""
    return resolve(DistillConfig, profile, overrides).student


def _task_config(
    data: str | Path,
    task: str | None,
    profile: str,
    overrides: Mapping[str, Any] | None,
    fields: Mapping[str, Any],
) -> tuple[Path, FinetuneConfig]:
    task_dir = resolve_task_dir(data, task)
    cfg = resolve(FinetuneConfig, profile, overrides, task=task or task_of(task_dir), **fields)
    return task_dir, cfg


@stage(
    "finetune",
    FinetuneConfig,
    metrics=_FINETUNE_METRICS,
    metadata=("task", "batch_size", "learning_rate", "best_dev_acc"),
)
def finetune(
    data: str | Path,
    init: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    tokenizer_dir: str | Path | None = None,
    **fields: Any,
) -> StageSummary:
    """Fine-tune one (batch size, learning rate) point and keep the best dev checkpoint.

    Args:
        data: A task directory, or the data artifact holding ``tasks/<task>/``.
        init: A saved model directory, ``scratch`` (random init with the profile's student
            shape) or ``scratch:<ModelArch JSON>``.
        out: Output model directory (the classifier; written all or nothing).
        task: Task name (default: the task directory's ``task.json``).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"finetune": {...}}``).
        tokenizer_dir: Directory with ``vocab.txt`` (default: the init model's).
        **fields: ``FinetuneConfig`` fields (``batch_size``, ``learning_rate``...).
    """
    from ppminilm.stages.finetune import run_finetune

    task_dir, cfg = _task_config(data, task, profile, overrides, fields)
    result = run_finetune(
        task_dir,
        init,
        out,
        cfg,
        tokenizer_dir=tokenizer_dir,
        arch=scratch_arch(profile, overrides),
    )
    return summarize(
        "finetune",
        {**result.to_dict(), "dev_acc": result.best_dev_acc},
        profile=profile,
        cfg=cfg,
        metadata={"grid_point": result.point.tag},
        out_dir=out,
    )


@stage("grid", GridConfig, metrics=("best_dev_acc",), metadata=("task",))
def grid(
    data: str | Path,
    init: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    tokenizer_dir: str | Path | None = None,
    batch_sizes: Sequence[int] | None = None,
    learning_rates: Sequence[float] | None = None,
    **fields: Any,
) -> StageSummary:
    """Fine-tune a batch size x learning rate grid in turn (the CLI's grid; KFP fans out).

    Args:
        data: A task directory or the data artifact.
        init: As for :func:`finetune`.
        out: Root directory: one model per point (``bs<b>_lr<lr>``), ``grid.json``, ``grid.md``.
        task: Task name (default: the task directory's).
        profile: Profile name.
        overrides: Stage-keyed overrides (``finetune`` and ``grid`` entries apply).
        tokenizer_dir: As for :func:`finetune`.
        batch_sizes: Grid batch sizes (default: the profile's).
        learning_rates: Grid learning rates (default: the profile's).
        **fields: ``FinetuneConfig`` fields shared by every point.
    """
    from ppminilm.stages.grid import run_grid, select_best

    task_dir, cfg = _task_config(data, task, profile, overrides, fields)
    grid_cfg = resolve(
        GridConfig,
        profile,
        overrides,
        task=cfg.task,
        batch_sizes=batch_sizes,
        learning_rates=learning_rates,
    )
    results = run_grid(
        task_dir,
        init,
        out,
        cfg,
        grid_cfg,
        tokenizer_dir=tokenizer_dir,
        arch=scratch_arch(profile, overrides),
    )
    best = select_best(results)
    return summarize(
        "grid",
        {
            "task": best.task,
            "best_dev_acc": best.best_dev_acc,
            "best": best.to_dict(),
            "results": [r.to_dict() for r in results],
        },
        profile=profile,
        cfg=grid_cfg,
        out_dir=out,
    )


def _finetune_results(models: Sequence[str | Path]) -> list[FinetuneResult]:
    """Fine-tuning results from model directories (their summaries) or grid/result JSONs."""
    from ppminilm.stages.grid import read_grid_results

    results: list[FinetuneResult] = []
    for item in models:
        path = Path(item)
        if path.is_dir():
            summary = StageSummary.read(path)
            if summary.stage != "finetune":
                raise UserError(
                    f"{path / STAGE_SUMMARY_FILE}: written by stage {summary.stage!r}, expected "
                    "a fine-tuned model (stage 'finetune')"
                )
            fields = {k: v for k, v in summary.result.items() if k != "dev_acc"}
            result = FinetuneResult.from_dict(fields, where=str(path / STAGE_SUMMARY_FILE))
            results.append(result.replace(model_dir=str(path)))
        else:
            results.extend(read_grid_results(path))
    return results


@stage(
    "select-best",
    FinetuneConfig,
    metrics=("best_dev_acc", "best_batch_size", "best_learning_rate"),
    metadata=("task", "dev_acc", "batch_size", "learning_rate", "precision"),
)
def select_best(
    models: Sequence[str | Path],
    *,
    best_out: str | Path | None = None,
    inference_out: str | Path | None = None,
    grid_md: str | Path | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    max_seq_len: int | None = None,
) -> StageSummary:
    """Pick the grid's best model; optionally copy it, export it, and write the grid table.

    Args:
        models: Fine-tuned model directories (each with its summary), or ``grid.json`` /
            result JSON files (then only the table is written).
        best_out: Where the winning model is copied (all or nothing).
        inference_out: Where its static inference export goes (needs ``best_out``).
        grid_md: Where the grid table (Markdown) goes.
        profile: Profile name.
        overrides: Stage-keyed overrides (``finetune.max_seq_len`` is the export length).
        max_seq_len: Export sequence length (default: the fine-tuning config's).
    """
    from ppminilm.modeling.saved import add_lineage
    from ppminilm.stages.export import run_export
    from ppminilm.stages.grid import grid_markdown
    from ppminilm.stages.grid import select_best as choose

    if not models:
        raise UserError("select-best got no fine-tuned models (empty grid?)")
    if inference_out is not None and best_out is None:
        raise UserError("select-best: an inference export (inference_out) needs best_out")
    results = _finetune_results(models)
    best = choose(results)
    cfg = resolve(FinetuneConfig, profile, overrides, task=best.task, max_seq_len=max_seq_len)
    exported: dict[str, Any] = {}
    if best_out is not None:
        if not best.model_dir or not Path(best.model_dir).is_dir():
            raise UserError(f"the best grid point's model {best.model_dir!r} is not a directory")
        copy_dir(best.model_dir, best_out, kind="model")
        lineage = Lineage(grid=tuple(results), finetune=best)
        add_lineage(best_out, lineage)
        if inference_out is not None:
            exported = run_export(best_out, inference_out, cfg.max_seq_len)
            add_lineage(inference_out, lineage)
    table = grid_markdown(results)
    if grid_md is not None:
        target = Path(grid_md)
        atomic_write_text(target / GRID_MD if target.is_dir() else target, table)
    result = {
        "task": best.task,
        "best": best.to_dict(),
        "grid": [r.to_dict() for r in results],
        "export": exported,
        "dev_acc": best.best_dev_acc,
        "best_dev_acc": best.best_dev_acc,
        "best_batch_size": best.batch_size,
        "best_learning_rate": best.learning_rate,
        "batch_size": best.batch_size,
        "learning_rate": best.learning_rate,
        "precision": "fp32",
    }
    return summarize("select-best", result, profile=profile, cfg=cfg, out_dir=best_out)


@stage("export", FinetuneConfig, metadata=("task", "max_seq_len"))
def export(
    model: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    max_seq_len: int | None = None,
) -> StageSummary:
    """Export a fine-tuned classifier to a static inference model.

    Args:
        model: The classifier model directory.
        out: The inference model directory (all or nothing).
        data: A task directory: check dynamic vs static predictions on its dev split.
        profile: Profile name.
        overrides: Stage-keyed overrides.
        max_seq_len: Serving sequence length (default: the profile's fine-tuning length).
    """
    from ppminilm.modeling.saved import read_lineage, read_model_info
    from ppminilm.stages.export import run_export

    task = read_model_info(model).task or None
    cfg = resolve(FinetuneConfig, profile, overrides, task=task, max_seq_len=max_seq_len)
    task_dir = resolve_task_dir(data, task) if data is not None else None
    result = run_export(model, out, cfg.max_seq_len, task_dir=task_dir)
    lineage = read_lineage(model)
    if lineage != Lineage():
        from ppminilm.modeling.saved import add_lineage

        add_lineage(out, lineage)
    return summarize("export", result, profile=profile, cfg=cfg, metadata={"precision": "fp32"})


__all__ = ["export", "finetune", "grid", "scratch_arch", "select_best"]
