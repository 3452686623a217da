"""``ppminilm prune`` / ``take-width`` / ``quantize``: stages 3 and 4 from the shell.

Examples::

    ppminilm prune --task-dir data/tasks/local_reviews --model-dir runs/ft --out runs/pruned
    ppminilm quantize --task-dir data/tasks/local_reviews --model-dir runs/pruned/inference \\
        --out runs/int8 --algos mse avg --batch-sizes 4 8 --batch-nums 1
"""

from __future__ import annotations

import argparse

from ppminilm.cli._common import add_config_flags, add_stage_parser, finish, overrides_of


def _add_common(parser: argparse.ArgumentParser, stage: str) -> None:
    parser.add_argument(
        "--task-dir",
        required=True,
        help="task directory (a train sample scores/calibrates, dev selects)",
    )
    parser.add_argument("--out", required=True, help="output directory (written all or nothing)")
    parser.add_argument(
        "--task", default=None, help="task name (default: the model's); picks per-task values"
    )
    parser.add_argument("--max-seq-len", type=int, default=None, help="tokens per example")
    add_config_flags(parser, stage)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``prune``, ``take-width`` and ``quantize``."""
    prune = add_stage_parser(
        subparsers, "prune", "3  OFA width pruning (DynaBERT) of a fine-tuned classifier"
    )
    _add_common(prune, "prune")
    prune.add_argument("--model-dir", required=True, help="fine-tuned classifier model dir")
    prune.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="batch size (default: the selected grid point's, from the model's lineage)",
    )
    prune.add_argument(
        "--widths",
        type=float,
        nargs="+",
        default=None,
        help="widths trained by one supernet, e.g. 0.75 0.5 (default: the profile's)",
    )
    prune.add_argument("--epochs", type=int, default=None, help="distillation epochs")
    prune.add_argument("--max-steps", type=int, default=None, help="stop after N steps if > 0")
    prune.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="peak learning rate (default: the selected grid point's, from the lineage)",
    )
    prune.add_argument("--seed", type=int, default=None, help="random seed")
    prune.set_defaults(func=_prune)

    take = add_stage_parser(
        subparsers, "take-width", "3  one width's sub-model out of a prune output (search)"
    )
    take.add_argument("--pruned", required=True, help="the prune stage's output directory")
    take.add_argument("--width", type=float, required=True, help="a width it trained")
    take.add_argument("--out", required=True, help="where the dynamic sub-model goes")
    take.add_argument("--inference-out", default=None, help="where its static inference model goes")
    take.set_defaults(func=_take_width)

    quant = add_stage_parser(
        subparsers, "quantize", "4  post-training INT8 quantization search (quant_post_static)"
    )
    _add_common(quant, "quantize")
    quant.add_argument("--model-dir", required=True, help="FP32 static inference dir")
    quant.add_argument("--algos", nargs="+", default=None, help="e.g. mse avg abs_max hist")
    quant.add_argument(
        "--batch-sizes", type=int, nargs="+", default=None, help="calibration batch sizes"
    )
    quant.add_argument(
        "--batch-nums", type=int, nargs="+", default=None, help="calibration batch counts"
    )
    quant.add_argument("--num-threads", type=int, default=None, help="CPU threads (scoring)")
    quant.set_defaults(func=_quantize)


def _prune(args: argparse.Namespace) -> int:
    from ppminilm.runner import prune

    summary = prune(
        args.task_dir,
        args.model_dir,
        args.out,
        task=args.task,
        profile=args.profile,
        overrides=overrides_of(args, "prune"),
        width_mult_list=args.widths,
        num_epochs=args.epochs,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_seq_len=args.max_seq_len,
        batch_size=args.batch_size,
    )
    return finish(summary, args)


def _take_width(args: argparse.Namespace) -> int:
    from ppminilm.runner import take_width

    summary = take_width(args.pruned, args.out, width=args.width, inference_out=args.inference_out)
    return finish(summary, args)


def _quantize(args: argparse.Namespace) -> int:
    from ppminilm.runner import quantize

    summary = quantize(
        args.task_dir,
        args.model_dir,
        args.out,
        task=args.task,
        profile=args.profile,
        overrides=overrides_of(args, "quantize"),
        algos=args.algos,
        batch_sizes=args.batch_sizes,
        batch_nums=args.batch_nums,
        num_threads=args.num_threads,
        max_seq_len=args.max_seq_len,
    )
    return finish(summary, args)
