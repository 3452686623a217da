"""Stage 2 around the single run: batch size x learning rate grid and the best-model pick.

The pipeline fans the grid out itself (``dsl.ParallelFor`` over :meth:`GridConfig.points`,
one :func:`ppminilm.stages.finetune.run_finetune` per point) and then calls :func:`select_best`
and :func:`write_grid_table` (the export is :mod:`ppminilm.stages.export`); :func:`run_grid` is
the sequential version for the command line.

Best-model rule (deterministic): highest dev accuracy; on a tie the smaller learning rate, then
the smaller batch size, then the result that comes first in the list. Small learning rates and
batches are preferred because they are the recipe's more conservative settings.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import FinetuneConfig, GridConfig, ModelArch
from ppminilm.io import atomic_write_json, atomic_write_text, read_json_file
from ppminilm.stages.finetune import run_finetune

logger = logging.getLogger(__name__)

GRID_JSON = "grid.json"
GRID_MD = "grid.md"
#: Keys every grid result must carry for selection and the table.
RESULT_KEYS = ("task", "batch_size", "learning_rate", "best_dev_acc")


def point_dir_name(batch_size: int, learning_rate: float) -> str:
    """Directory name of one grid point's model, e.g. ``bs32_lr5e-05``."""
    return f"bs{batch_size}_lr{learning_rate:g}"


def run_grid(
    task_dir: str | Path,
    init_model: str | Path | None,
    out_root: str | Path,
    finetune_cfg: FinetuneConfig,
    grid_cfg: GridConfig,
    *,
    tokenizer_dir: str | Path | None = None,
    arch: ModelArch | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune every grid point in turn and write the grid table.

    Args:
        task_dir: Task directory.
        init_model: As for :func:`ppminilm.stages.finetune.run_finetune`.
        out_root: Each point's model goes to ``out_root/bs<b>_lr<lr>``; ``grid.json`` and
            ``grid.md`` go to ``out_root``.
        finetune_cfg: Settings shared by all points (batch size and learning rate are
            replaced per point).
        grid_cfg: Batch sizes and learning rates.
        tokenizer_dir: As for ``run_finetune``.
        arch: As for ``run_finetune``.

    Returns:
        One ``run_finetune`` summary per point, in grid order.
    """
    out_root = Path(out_root)
    results = []
    points = grid_cfg.points()
    for i, point in enumerate(points, start=1):
        logger.info(
            "grid point %d/%d: batch size %d, learning rate %g",
            i,
            len(points),
            point["batch_size"],
            point["learning_rate"],
        )
        cfg = finetune_cfg.replace(**point)
        results.append(
            run_finetune(
                task_dir,
                init_model,
                out_root / point_dir_name(cfg.batch_size, cfg.learning_rate),
                cfg,
                tokenizer_dir=tokenizer_dir,
                arch=arch,
            )
        )
    write_grid_table(results, out_root)
    return results


def _check_results(results: Sequence[Mapping[str, Any]]) -> str:
    if not results:
        raise ValueError("no grid results to select from (empty list)")
    for i, r in enumerate(results):
        missing = [k for k in RESULT_KEYS if k not in r]
        if missing:
            raise ValueError(
                f"grid result #{i} lacks field(s) {missing}; expected a run_finetune summary"
            )
    tasks = sorted({str(r["task"]) for r in results})
    if len(tasks) > 1:
        raise ValueError(f"grid results mix tasks {tasks}; select the best per task")
    return tasks[0]


def select_best(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pick the best grid point of one task.

    Order: highest ``best_dev_acc``; ties go to the smaller ``learning_rate``, then the
    smaller ``batch_size``, then the earlier result in ``results``.

    Args:
        results: ``run_finetune`` summaries of one task.

    Returns:
        A copy of the winning summary.

    Raises:
        ValueError: If ``results`` is empty, mixes tasks or lacks required fields.
    """
    _check_results(results)
    ranked = sorted(
        enumerate(results),
        key=lambda ir: (
            -float(ir[1]["best_dev_acc"]),
            float(ir[1]["learning_rate"]),
            int(ir[1]["batch_size"]),
            ir[0],
        ),
    )
    return dict(ranked[0][1])


def grid_markdown(results: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of dev accuracy: batch sizes as rows, learning rates as columns.

    The best point is shown in bold with a star; missing points show ``-``.
    """
    task = _check_results(results)
    best = select_best(results)
    bss = sorted({int(r["batch_size"]) for r in results})
    lrs = sorted({float(r["learning_rate"]) for r in results})
    cell = {
        (int(r["batch_size"]), float(r["learning_rate"])): float(r["best_dev_acc"]) for r in results
    }
    lines = [
        f"### {task}: dev accuracy, batch size x learning rate",
        "",
        "| batch size | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|" + "---|" * len(lrs),
    ]
    for bs in bss:
        row = []
        for lr in lrs:
            acc = cell.get((bs, lr))
            if acc is None:
                row.append("-")
            elif bs == int(best["batch_size"]) and lr == float(best["learning_rate"]):
                row.append(f"**{acc:.4f}** ★")
            else:
                row.append(f"{acc:.4f}")
        lines.append(f"| {bs} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"Best: batch size {best['batch_size']}, learning rate "
        f"{float(best['learning_rate']):g}, dev accuracy {float(best['best_dev_acc']):.4f}"
        + (
            f" (majority class {float(best['majority_acc']):.4f})" if "majority_acc" in best else ""
        ),
        "",
        "Ties go to the smaller learning rate, then the smaller batch size.",
    ]
    return "\n".join(lines) + "\n"


def write_grid_table(results: Sequence[Mapping[str, Any]], out_dir: str | Path) -> dict[str, str]:
    """Write ``grid.json`` (all results + the best) and ``grid.md`` (the table).

    Args:
        results: ``run_finetune`` summaries of one task.
        out_dir: Target directory (created).

    Returns:
        ``{"json": path, "markdown": path}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = _check_results(results)
    record = {"task": task, "best": select_best(results), "results": [dict(r) for r in results]}
    atomic_write_json(out / GRID_JSON, record)
    atomic_write_text(out / GRID_MD, grid_markdown(results))
    return {"json": str(out / GRID_JSON), "markdown": str(out / GRID_MD)}


def read_grid_results(path: str | Path) -> list[dict[str, Any]]:
    """Read results from a ``grid.json``, a JSON list of summaries or one summary JSON.

    Raises:
        ValueError: If the file is missing, not JSON, or holds no summaries.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such grid results file")
    data = read_json_file(p, ValueError)
    if isinstance(data, dict) and "results" in data:
        data = data["results"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError(f"{p}: expected grid.json, a list of fine-tune summaries or one summary")
    return data
