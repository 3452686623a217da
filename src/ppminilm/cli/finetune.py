"""``ppminilm finetune`` / ``grid`` / ``select-best`` / ``export``: stage 2 from the shell.

Examples::

    ppminilm finetune --task-dir data/tasks/local_reviews --init scratch \\
        --tokenizer-dir data/vocab --batch-size 32 --learning-rate 1e-3 --out runs/ft
    ppminilm grid --task-dir data/tasks/local_reviews --init runs/distill --out runs/grid
    ppminilm select-best runs/grid/grid.json --grid-md runs/grid/grid.md
    ppminilm export --model-dir runs/grid/bs32_lr0.001 --out runs/infer --max-seq-len 64
"""

from __future__ import annotations

import argparse

from ppminilm.cli._common import add_config_flags, add_stage_parser, finish, overrides_of


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task-dir", required=True, help="task directory (train/dev[/test].json, labels)"
    )
    parser.add_argument(
        "--init",
        required=True,
        help="saved model dir, 'scratch' (random init with the profile's student shape) or "
        "'scratch:<ModelArch JSON>'",
    )
    parser.add_argument(
        "--tokenizer-dir",
        default=None,
        help="dir with vocab.txt (default: the init model dir; required for scratch)",
    )
    parser.add_argument(
        "--task", default=None, help="task name (default: the task dir's task.json)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs; 0 = per-task default (profile's)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N steps if > 0")
    parser.add_argument("--max-seq-len", type=int, default=None, help="tokens per example")
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluate every N steps")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    add_config_flags(parser, "finetune")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``finetune``, ``grid``, ``select-best`` and ``export``."""
    ft = add_stage_parser(subparsers, "finetune", "2  fine-tune one (batch size, lr) point")
    _add_common(ft)
    ft.add_argument("--batch-size", type=int, default=None, help="training batch size")
    ft.add_argument("--learning-rate", type=float, default=None, help="peak learning rate")
    ft.add_argument("--out", required=True, help="model directory for the best checkpoint")
    ft.set_defaults(func=_finetune)

    grid = add_stage_parser(subparsers, "grid", "2  fine-tune a batch size x lr grid in turn")
    _add_common(grid)
    grid.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="grid batch sizes")
    grid.add_argument(
        "--learning-rates", type=float, nargs="+", default=None, help="grid learning rates"
    )
    grid.add_argument(
        "--out", required=True, help="root dir: one model dir per point + grid.json + grid.md"
    )
    grid.set_defaults(func=_grid)

    best = add_stage_parser(subparsers, "select-best", "2  pick the best grid point of a task")
    best.add_argument(
        "models",
        nargs="+",
        help="fine-tuned model dirs, grid.json files or fine-tune result JSON files",
    )
    best.add_argument("--best-out", default=None, help="copy the best model here")
    best.add_argument(
        "--inference-out", default=None, help="export the best model here (needs --best-out)"
    )
    best.add_argument("--grid-md", default=None, help="write the grid table (Markdown) here")
    add_config_flags(best, "finetune")
    best.set_defaults(func=_select_best)

    exp = add_stage_parser(subparsers, "export", "2  export a classifier as a static model")
    exp.add_argument("--model-dir", required=True, help="fine-tuned classifier model dir")
    exp.add_argument("--out", required=True, help="inference model dir to write")
    exp.add_argument(
        "--max-seq-len", type=int, default=None, help="default: the profile's fine-tuning length"
    )
    exp.add_argument(
        "--task-dir", default=None, help="check dynamic vs static predictions on its dev split"
    )
    add_config_flags(exp, "finetune")
    exp.set_defaults(func=_export)


def _fields(args: argparse.Namespace) -> dict[str, object]:
    return {
        "num_epochs": args.epochs,
        "max_steps": args.max_steps,
        "max_seq_len": args.max_seq_len,
        "eval_steps": args.eval_steps,
        "seed": args.seed,
    }


def _finetune(args: argparse.Namespace) -> int:
    from ppminilm.runner import finetune

    summary = finetune(
        args.task_dir,
        args.init,
        args.out,
        task=args.task,
        profile=args.profile,
        overrides=overrides_of(args, "finetune"),
        tokenizer_dir=args.tokenizer_dir,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        **_fields(args),
    )
    return finish(summary, args)


def _grid(args: argparse.Namespace) -> int:
    from ppminilm.runner import grid

    summary = grid(
        args.task_dir,
        args.init,
        args.out,
        task=args.task,
        profile=args.profile,
        overrides=overrides_of(args, "finetune"),
        tokenizer_dir=args.tokenizer_dir,
        batch_sizes=args.batch_sizes,
        learning_rates=args.learning_rates,
        **_fields(args),
    )
    return finish(summary, args)


def _select_best(args: argparse.Namespace) -> int:
    from ppminilm.runner import select_best

    summary = select_best(
        args.models,
        best_out=args.best_out,
        inference_out=args.inference_out,
        grid_md=args.grid_md,
        profile=args.profile,
        overrides=overrides_of(args, "finetune"),
    )
    return finish(summary, args)


def _export(args: argparse.Namespace) -> int:
    from ppminilm.runner import export

    summary = export(
        args.model_dir,
        args.out,
        data=args.task_dir,
        profile=args.profile,
        overrides=overrides_of(args, "finetune"),
        max_seq_len=args.max_seq_len,
    )
    return finish(summary, args)
