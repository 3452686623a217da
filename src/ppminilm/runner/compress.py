"""Runner steps of stages 3 and 4: OFA width pruning and post-training INT8 quantization."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppminilm.config import PruneConfig, QuantConfig, resolve
from ppminilm.contracts import CANDIDATES_MD, FinetuneResult, Lineage, StageSummary
from ppminilm.io import atomic_write, copy_dir
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
    metadata=("task", "width", "dev_acc", "precision"),
)
def prune(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    inference_out: str | Path | None = None,
    task: str | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> StageSummary:
    """OFA width pruning of a fine-tuned classifier (DynaBERT importance + distillation).

    Args:
        data: A task directory or the data artifact.
        model: The fine-tuned classifier model directory.
        out: Without ``inference_out``: the prune stage's whole layout (``model/``,
            ``inference/``, other widths, summary). With it: the dynamic sub-model of the
            smallest width.
        inference_out: Where that sub-model's static inference export goes (KFP).
        task: Task name (default: the model's).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"prune": {...}}``).
        **fields: ``PruneConfig`` fields; ``batch_size`` / ``learning_rate`` left unset
            everywhere are the selected grid point's (the model's lineage).
    """
    from ppminilm.modeling.saved import add_lineage, read_lineage, read_model_info
    from ppminilm.stages.prune import run_prune

    task = task or read_model_info(model).task or None
    task_dir = resolve_task_dir(data, task)
    cfg, hparams_from = with_grid_point(
        resolve(PruneConfig, profile, overrides, task=task, **fields),
        read_lineage(model).finetune,
    )
    if inference_out is None:
        result = dict(run_prune(task_dir, model, out, cfg))
        model_dir, infer_dir = Path(result["model_dir"]), Path(result["inference_dir"])
    else:
        with tempfile.TemporaryDirectory(prefix="ppminilm-prune-") as work:
            result = dict(run_prune(task_dir, model, Path(work) / "out", cfg))
            copy_dir(result["model_dir"], out, kind="model")
            copy_dir(result["inference_dir"], inference_out, kind="inference")
        model_dir, infer_dir = Path(out), Path(inference_out)
        result.update(model_dir=str(model_dir), inference_dir=str(infer_dir))
    lineage = read_lineage(model).merged(
        Lineage(prune=_without_bulk(result, "per_width", "dev_acc_per_epoch"))
    )
    for target in (model_dir, infer_dir):
        add_lineage(target, lineage)
    result.update(
        task=read_model_info(model_dir).task,
        hparams_from=hparams_from,
        width=min(cfg.width_mult_list),
        dev_acc=result.get("pruned_dev_acc"),
        precision="fp32",
    )
    return summarize("prune", result, profile=profile, cfg=cfg, out_dir=model_dir)


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


__all__ = ["prune", "quantize", "with_grid_point"]
