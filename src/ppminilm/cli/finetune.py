"""``ppminilm finetune`` / ``grid`` / ``select-best`` / ``export``: stage 2 from the shell.

Examples::

    ppminilm finetune --task-dir data/tasks/local_reviews --init scratch \\
        --tokenizer-dir data/vocab --profile local --batch-size 32 --learning-rate 1e-3 \\
        --out runs/ft
    ppminilm grid --task-dir data/tasks/local_reviews --init runs/distill --profile local \\
        --out runs/grid
    ppminilm select-best runs/grid/grid.json --out runs/grid
    ppminilm export --model-dir runs/grid/bs32_lr0.001 --out runs/infer --max-seq-len 64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ppminilm.config import DistillConfig, FinetuneConfig, GridConfig, ModelArch
from ppminilm.config.profiles import PROFILES, stage_config
from ppminilm.io import read_json_file


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task-dir", required=True, help="task directory (train/dev.json ...)")
    parser.add_argument(
        "--init",
        required=True,
        help="saved model dir, 'scratch' (random init with the profile's "
        "student arch) or 'scratch:<ModelArch JSON>'",
    )
    parser.add_argument(
        "--tokenizer-dir",
        default=None,
        help="dir with vocab.txt (default: the init model dir; required for scratch)",
    )
    parser.add_argument("--profile", default="local", choices=sorted(PROFILES))
    parser.add_argument(
        "--task", default=None, help="task name (default: the task dir's task.json)"
    )
    parser.add_argument("--epochs", type=int, default=None, help="0 = per-task default")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--max-seq-len", type=int, default=None)
    parser.add_argument("--eval-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--config",
        default=None,
        help="JSON file of FinetuneConfig overrides (applied before flags)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``finetune``, ``grid``, ``select-best`` and ``export``."""
    ft = subparsers.add_parser("finetune", help="fine-tune one (batch size, lr) point")
    _add_common(ft)
    ft.add_argument("--batch-size", type=int, default=None)
    ft.add_argument("--learning-rate", type=float, default=None)
    ft.add_argument("--out", required=True, help="model directory for the best checkpoint")
    ft.add_argument("--summary", default=None, help="also write the summary JSON here")
    ft.set_defaults(func=_finetune)

    grid = subparsers.add_parser("grid", help="fine-tune a batch size x lr grid sequentially")
    _add_common(grid)
    grid.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    grid.add_argument("--learning-rates", type=float, nargs="+", default=None)
    grid.add_argument(
        "--out", required=True, help="root dir: one model dir per point + grid.json + grid.md"
    )
    grid.set_defaults(func=_grid)

    best = subparsers.add_parser("select-best", help="pick the best grid point of one task")
    best.add_argument(
        "results", nargs="+", help="grid.json files, JSON lists of summaries, or summary JSON files"
    )
    best.add_argument("--out", default=None, help="write grid.json + grid.md here")
    best.set_defaults(func=_select_best)

    exp = subparsers.add_parser("export", help="export a classifier to a static inference model")
    exp.add_argument("--model-dir", required=True)
    exp.add_argument("--out", required=True)
    exp.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help="default: the profile's fine-tuning max_seq_len",
    )
    exp.add_argument("--profile", default="local", choices=sorted(PROFILES))
    exp.add_argument(
        "--task-dir",
        default=None,
        help="check dynamic vs static predictions on this task's dev split",
    )
    exp.set_defaults(func=_export)


def _task_of(task_dir: str) -> str:
    path = Path(task_dir) / "task.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {task_dir} a task directory?)")
    data = read_json_file(path, ValueError)
    if not isinstance(data, dict) or not isinstance(data.get("task"), str):
        raise ValueError(f"{path}: field 'task': expected a task name string")
    return str(data["task"])


def _finetune_config(args: argparse.Namespace, **point: Any) -> FinetuneConfig:
    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(FinetuneConfig.load(args.config).to_dict())
    overrides["task"] = args.task or _task_of(args.task_dir)
    flags = {
        "num_epochs": args.epochs,
        "max_steps": args.max_steps,
        "max_seq_len": args.max_seq_len,
        "eval_steps": args.eval_steps,
        "seed": args.seed,
        **point,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    cfg = stage_config("finetune", args.profile, overrides)
    assert isinstance(cfg, FinetuneConfig)
    return cfg


def _scratch_arch(args: argparse.Namespace) -> ModelArch:
    """The profile's distillation student: what 'scratch' is compared against."""
    cfg = stage_config("distill", args.profile)
    assert isinstance(cfg, DistillConfig)
    return cfg.student


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _finetune(args: argparse.Namespace) -> int:
    from ppminilm.stages.finetune import run_finetune

    cfg = _finetune_config(args, batch_size=args.batch_size, learning_rate=args.learning_rate)
    summary = run_finetune(
        args.task_dir,
        args.init,
        args.out,
        cfg,
        tokenizer_dir=args.tokenizer_dir,
        arch=_scratch_arch(args),
    )
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _dump({k: v for k, v in summary.items() if k != "evals"})
    return 0


def _grid(args: argparse.Namespace) -> int:
    from ppminilm.stages.grid import run_grid, select_best

    grid_over: dict[str, Any] = {}
    if args.batch_sizes:
        grid_over["batch_sizes"] = args.batch_sizes
    if args.learning_rates:
        grid_over["learning_rates"] = args.learning_rates
    grid_cfg = stage_config("grid", args.profile, grid_over)
    assert isinstance(grid_cfg, GridConfig)
    results = run_grid(
        args.task_dir,
        args.init,
        args.out,
        _finetune_config(args),
        grid_cfg,
        tokenizer_dir=args.tokenizer_dir,
        arch=_scratch_arch(args),
    )
    best = select_best(results)
    sys.stdout.write((Path(args.out) / "grid.md").read_text(encoding="utf-8"))
    _dump({k: v for k, v in best.items() if k != "evals"})
    return 0


def _select_best(args: argparse.Namespace) -> int:
    from ppminilm.stages.grid import read_grid_results, select_best, write_grid_table

    results = [r for path in args.results for r in read_grid_results(path)]
    best = select_best(results)
    if args.out:
        write_grid_table(results, args.out)
    _dump({k: v for k, v in best.items() if k != "evals"})
    return 0


def _export(args: argparse.Namespace) -> int:
    from ppminilm.stages.export import run_export

    max_seq_len = args.max_seq_len
    if max_seq_len is None:
        cfg = stage_config("finetune", args.profile)
        assert isinstance(cfg, FinetuneConfig)
        max_seq_len = cfg.max_seq_len
    _dump(run_export(args.model_dir, args.out, max_seq_len, task_dir=args.task_dir))
    return 0
