"""``ppminilm prune`` / ``quantize``: stages 3 and 4 from the shell.

Examples::

    ppminilm prune --task-dir data/tasks/local_reviews --model-dir runs/ft --out runs/pruned \\
        --profile local
    ppminilm quantize --task-dir data/tasks/local_reviews --model-dir runs/pruned/inference \\
        --out runs/int8 --profile local --algos mse avg --batch-nums 4
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ppminilm.config import PruneConfig, QuantConfig
from ppminilm.config.profiles import PROFILES, stage_config


def _add_common(parser: argparse.ArgumentParser, config_cls: str) -> None:
    parser.add_argument("--task-dir", required=True, help="task directory (train/dev/calib)")
    parser.add_argument("--out", required=True, help="output directory (all or nothing)")
    parser.add_argument("--profile", default="local", choices=sorted(PROFILES))
    parser.add_argument("--max-seq-len", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--config", default=None, help=f"JSON file of {config_cls} overrides (before flags)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prune`` and ``quantize``."""
    prune = subparsers.add_parser(
        "prune", help="DynaBERT/OFA width pruning of a fine-tuned classifier"
    )
    _add_common(prune, "PruneConfig")
    prune.add_argument("--model-dir", required=True, help="fine-tuned classifier model dir")
    prune.add_argument("--widths", type=float, nargs="+", default=None, help="e.g. 0.75")
    prune.add_argument("--epochs", type=int, default=None)
    prune.add_argument("--max-steps", type=int, default=None)
    prune.add_argument("--learning-rate", type=float, default=None)
    prune.add_argument("--seed", type=int, default=None)
    prune.set_defaults(func=_prune)

    quant = subparsers.add_parser(
        "quantize", help="post-training INT8 quantization search (quant_post_static)"
    )
    _add_common(quant, "QuantConfig")
    quant.add_argument("--model-dir", required=True, help="FP32 static inference dir")
    quant.add_argument("--algos", nargs="+", default=None, help="e.g. mse avg abs_max hist")
    quant.add_argument("--batch-nums", type=int, nargs="+", default=None)
    quant.add_argument("--num-threads", type=int, default=None)
    quant.set_defaults(func=_quantize)


def _overrides(args: argparse.Namespace, cls: type[Any], flags: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = cls.load(args.config).to_dict() if args.config else {}
    flags = {"max_seq_len": args.max_seq_len, "batch_size": args.batch_size, **flags}
    out.update({k: v for k, v in flags.items() if v is not None})
    return out


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _prune(args: argparse.Namespace) -> int:
    from ppminilm.stages.prune.ofa import run_prune

    flags = {
        "width_mult_list": args.widths,
        "num_epochs": args.epochs,
        "max_steps": args.max_steps,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
    }
    cfg = stage_config("prune", args.profile, _overrides(args, PruneConfig, flags))
    summary = run_prune(args.task_dir, args.model_dir, args.out, cfg)  # type: ignore[arg-type]
    _dump({k: v for k, v in summary.items() if k != "per_width"})
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from ppminilm.stages.quantize import run_quantize

    flags = {"algos": args.algos, "batch_nums": args.batch_nums, "num_threads": args.num_threads}
    cfg = stage_config("quantize", args.profile, _overrides(args, QuantConfig, flags))
    summary = run_quantize(args.task_dir, args.model_dir, args.out, cfg)  # type: ignore[arg-type]
    _dump(summary)
    return 0
