"""Runner steps of stages 3 and 4: OFA width pruning (every width, then one taken out per
search candidate) and post-training INT8 quantization."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppminilm.config import PruneConfig, QuantConfig, resolve
from ppminilm.contracts import (
    CANDIDATES_MD,
    PRUNE_SUMMARY_FILE,
    ContractError,
    FinetuneResult,
    Lineage,
    StageSummary,
)
from ppminilm.io import atomic_write, copy_dir, read_json_file
from ppminilm.runner.core import resolve_task_dir, stage, summarize

logger = logging.getLogger(__name__)


def _without_bulk(result: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    """A stage result without its bulky per-step lists (for lineage records)."""
    return {k: v for k, v in result.items() if k not in keys}


def with_grid_point(cfg: PruneConfig, finetune: FinetuneResult | None) -> tuple[PruneConfig, str]:
    """Fill the unset pruning batch size / learning rate from the selected grid point.

    Returns:
        The completed config and where the values came from (for the summary and logs).
    """
    missing = {k for k in ("batch_size", "learning_rate") if getattr(cfg, k) is None}
    if not missing:
        return cfg, "config"
    if finetune is None:
        return cfg, "unset"  # PruneConfig.optimisation names the fix
    point = finetune.point
    filled = cfg.replace(**{k: getattr(point, k) for k in missing})
    source = f"selected grid point {point.tag} ({', '.join(sorted(missing))})"
    logger.info(
        "pruning with batch size %s, learning rate %g: %s",
        filled.batch_size,
        filled.learning_rate,
        source,
    )
    return filled, source


@stage(
    "prune",
    PruneConfig,
    metrics=("pruned_dev_acc", "unpruned_dev_acc", "params_before", "params_after", "seconds"),
    metadata=("task", "widths", "width", "dev_acc", "precision"),
)
def prune(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> StageSummary:
    """OFA width pruning of a fine-tuned classifier (DynaBERT importance + distillation).

    One supernet is trained for every width of ``width_mult_list``; each width's best dev
    checkpoint is exported (dynamic and static). :func:`take_width` takes one of them out.

    Args:
        data: A task directory or the data artifact.
        model: The fine-tuned classifier model directory.
        out: The prune stage's whole layout (``model/`` and ``inference/`` of the smallest
            width, ``width_<w>/`` for the others, ``prune_summary.json``).
        task: Task name (default: the model's).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"prune": {...}}``).
        **fields: ``PruneConfig`` fields (``width_mult_list``: the search's widths);
            ``batch_size`` / ``learning_rate`` left unset everywhere are the selected grid
            point's (the model's lineage).
    """
    from ppminilm.modeling.saved import add_lineage, read_lineage, read_model_info
    from ppminilm.stages.prune import run_prune
    from ppminilm.stages.prune.layout import width_dirs

    task = task or read_model_info(model).task or None
    task_dir = resolve_task_dir(data, task)
    cfg, hparams_from = with_grid_point(
        resolve(PruneConfig, profile, overrides, task=task, **fields),
        read_lineage(model).finetune,
    )
    result = dict(run_prune(task_dir, model, out, cfg))
    lineage = read_lineage(model).merged(
        Lineage(prune=_without_bulk(result, "per_width", "dev_acc_per_epoch"))
    )
    for width in result["widths"]:
        for target in width_dirs(out, width):
            add_lineage(target, lineage)
    result.update(
        task=read_model_info(result["model_dir"]).task,
        hparams_from=hparams_from,
        width=min(cfg.width_mult_list),
        dev_acc=result.get("pruned_dev_acc"),
        precision="fp32",
    )
    return summarize("prune", result, profile=profile, cfg=cfg, out_dir=out)


@stage(
    "take-width",
    metrics=("dev_acc", "params", "width"),
    metadata=("task", "width", "dev_acc", "precision"),
)
def take_width(
    pruned: str | Path,
    out: str | Path,
    *,
    width: float,
    inference_out: str | Path | None = None,
) -> StageSummary:
    """One width's sub-model out of the prune output (the search loop's first step).

    Args:
        pruned: The prune stage's output (every trained width).
        out: Where the width's dynamic sub-model goes.
        width: The width (one of those the prune step trained).
        inference_out: Where its static inference export goes (KFP; the search's input).

    Raises:
        ContractError: If ``pruned`` did not train ``width``.
    """
    from ppminilm.modeling.saved import read_model_info
    from ppminilm.stages.prune.layout import WIDTH_TOLERANCE, width_dirs

    model_dir, infer_dir = width_dirs(pruned, width)
    copy_dir(model_dir, out, kind="model")
    if inference_out is not None:
        copy_dir(infer_dir, inference_out, kind="inference")
    summary = read_json_file(Path(pruned) / PRUNE_SUMMARY_FILE, ContractError)
    record: dict[str, Any] = next(
        (
            r
            for r in summary.get("per_width", {}).values()
            if abs(float(r.get("width", -1)) - width) < WIDTH_TOLERANCE
        ),
        {},
    )
    info = read_model_info(out)
    result = {
        "task": info.task,
        "width": float(width),
        "dev_acc": record.get("best_dev_acc"),
        "best_step": record.get("best_step"),
        "params": record.get("params"),
        "precision": "fp32",
        "model_dir": str(out),
        "inference_dir": str(inference_out or ""),
    }
    logger.info(
        "width %g: dev acc %s, %s encoder params", width, result["dev_acc"], result["params"]
    )
    return summarize("take-width", result, profile="", out_dir=out)


@stage(
    "quantize",
    QuantConfig,
    metrics=("int8_dev_acc", "fp32_dev_acc", "seconds"),
    metadata=("task", "precision", "algo", "batch_size", "batch_num", "dev_acc"),
)
def quantize(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    candidates_md: str | Path | None = None,
    task: str | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> StageSummary:
    """Post-training quantization search; the best INT8 model goes to ``out``.

    Args:
        data: A task directory or the data artifact.
        model: The FP32 static inference model directory.
        out: The INT8 inference model directory (all or nothing).
        candidates_md: Where the candidates table (Markdown) is copied (KFP).
        task: Task name (default: the model's ``serving.json``).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"quantize": {...}}``).
        **fields: ``QuantConfig`` fields.
    """
    from ppminilm.modeling.export import read_serving_config
    from ppminilm.modeling.saved import add_lineage, read_lineage
    from ppminilm.stages.quantize import run_quantize

    task = task or read_serving_config(model).task or None
    task_dir = resolve_task_dir(data, task)
    cfg = resolve(QuantConfig, profile, overrides, task=task, **fields)
    result = dict(run_quantize(task_dir, model, out, cfg))
    if candidates_md is not None:
        atomic_write(candidates_md, lambda tmp: shutil.copyfile(Path(out) / CANDIDATES_MD, tmp))
    add_lineage(out, read_lineage(model).merged(Lineage(quantize=result)))
    best = result.get("best", {})
    result.update(
        task=read_serving_config(out).task,
        precision="int8",
        algo=best.get("algo"),
        batch_size=best.get("batch_size"),
        batch_num=best.get("batch_num"),
        dev_acc=result.get("int8_dev_acc"),
    )
    return summarize("quantize", result, profile=profile, cfg=cfg, out_dir=out)


__all__ = ["prune", "quantize", "take_width", "with_grid_point"]
