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
from collections.abc import Sequence
from pathlib import Path

from ppminilm.config import FinetuneConfig, GridConfig, ModelArch
from ppminilm.contracts import GRID_JSON, GRID_MD, ContractError, FinetuneResult, GridPoint
from ppminilm.errors import UserError
from ppminilm.io import atomic_write_json, atomic_write_text, read_json_file
from ppminilm.stages.finetune import run_finetune

logger = logging.getLogger(__name__)


def run_grid(
    task_dir: str | Path,
    init_model: str | Path | None,
    out_root: str | Path,
    finetune_cfg: FinetuneConfig,
    grid_cfg: GridConfig,
    *,
    tokenizer_dir: str | Path | None = None,
    arch: ModelArch | None = None,
) -> list[FinetuneResult]:
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
        One result per point, in grid order.
    """
    out_root = Path(out_root)
    results = []
    points = [GridPoint.from_dict(p) for p in grid_cfg.points()]
    for i, point in enumerate(points, start=1):
        logger.info("grid point %d/%d: %s", i, len(points), point.tag)
        cfg = finetune_cfg.replace(**point.to_dict())
        results.append(
            run_finetune(
                task_dir,
                init_model,
                out_root / point.tag,
                cfg,
                tokenizer_dir=tokenizer_dir,
                arch=arch,
            )
        )
    write_grid_table(results, out_root)
    return results


def _task_of(results: Sequence[FinetuneResult]) -> str:
    if not results:
        raise UserError("no grid results to select from (empty list)")
    tasks = sorted({r.task for r in results})
    if len(tasks) > 1:
        raise UserError(f"grid results mix tasks {tasks}; select the best per task")
    return tasks[0]


def select_best(results: Sequence[FinetuneResult]) -> FinetuneResult:
    """Pick the best grid point of one task.

    Order: highest ``best_dev_acc``; ties go to the smaller ``learning_rate``, then the
    smaller ``batch_size``, then the earlier result in ``results``.

    Args:
        results: Fine-tuning results of one task.

    Returns:
        The winning result.

    Raises:
        UserError: If ``results`` is empty or mixes tasks.
    """
    _task_of(results)
    ranked = sorted(
        enumerate(results),
        key=lambda ir: (-ir[1].best_dev_acc, ir[1].learning_rate, ir[1].batch_size, ir[0]),
    )
    return ranked[0][1]


def grid_markdown(results: Sequence[FinetuneResult]) -> str:
    """Markdown table of dev accuracy: batch sizes as rows, learning rates as columns.

    The best point is shown in bold with a star; missing points show ``-``.
    """
    task = _task_of(results)
    best = select_best(results)
    bss = sorted({r.batch_size for r in results})
    lrs = sorted({r.learning_rate for r in results})
    cell = {(r.batch_size, r.learning_rate): r.best_dev_acc for r in results}
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
            elif (bs, lr) == (best.batch_size, best.learning_rate):
                row.append(f"**{acc:.4f}** ★")
            else:
                row.append(f"{acc:.4f}")
        lines.append(f"| {bs} | " + " | ".join(row) + " |")
    lines += [
        "",
        f"Best: batch size {best.batch_size}, learning rate {best.learning_rate:g}, dev accuracy "
        f"{best.best_dev_acc:.4f} (majority class {best.majority_acc:.4f})",
        "",
        "Ties go to the smaller learning rate, then the smaller batch size.",
    ]
    return "\n".join(lines) + "\n"


def write_grid_table(results: Sequence[FinetuneResult], out_dir: str | Path) -> dict[str, str]:
    """Write ``grid.json`` (all results + the best) and ``grid.md`` (the table).

    Args:
        results: Fine-tuning results of one task.
        out_dir: Target directory (created).

    Returns:
        ``{"json": path, "markdown": path}``.
    """
    out = Path(out_dir)
    task = _task_of(results)
    record = {
        "task": task,
        "best": select_best(results).to_dict(),
        "results": [r.to_dict() for r in results],
    }
    atomic_write_json(out / GRID_JSON, record)
    atomic_write_text(out / GRID_MD, grid_markdown(results))
    return {"json": str(out / GRID_JSON), "markdown": str(out / GRID_MD)}


def read_grid_results(path: str | Path) -> list[FinetuneResult]:
    """Read results from a ``grid.json``, a JSON list of results or one result JSON.

    Raises:
        UserError: If the file is missing, not JSON, or holds no fine-tuning results.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such grid results file")
    data = read_json_file(p, ContractError)
    if isinstance(data, dict) and "results" in data:
        data = data["results"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ContractError(f"{p}: expected grid.json, a list of fine-tune results or one result")
    return [FinetuneResult.from_dict(r, where=f"{p}[{i}]") for i, r in enumerate(data)]
