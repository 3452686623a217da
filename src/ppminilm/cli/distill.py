"""``ppminilm pretrain-teacher`` / ``distill``: stage 1 from the shell.

Examples::

    ppminilm pretrain-teacher --corpus data/corpus --vocab data/vocab --out runs/teacher
    ppminilm distill --corpus data/corpus --teacher runs/teacher --out runs/student \\
        --checkpoint-dir runs/ckpt
    ppminilm distill --profile cluster --gpus-per-node 8 \\
        --corpus /data/corpus --teacher /models/roberta-wwm-ext-large --out /out/student \\
        --checkpoint-dir s3://bucket/run1/ckpt   # one rank per GPU (Paddle's launcher)

Both print the stage summary as JSON on stdout. A pre-empted ``distill`` (SIGTERM) exits 143
after checkpointing; the same command resumes it. Inputs and ``--out`` may be s3:// URIs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ppminilm.cli._common import add_config_flags, add_stage_parser, finish, overrides_of


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain-teacher`` and ``distill``."""
    tp = add_stage_parser(
        subparsers,
        "pretrain-teacher",
        "1  MLM-train the local teacher (or copy a pretrained one)",
    )
    tp.add_argument("--corpus", required=True, help="corpus dir of *.txt shards")
    tp.add_argument("--vocab", required=True, help="tokenizer dir with vocab.txt")
    tp.add_argument("--out", required=True, help="output teacher model dir")
    tp.add_argument(
        "--teacher-uri",
        default="",
        help="pretrained teacher dir or s3:// prefix to copy instead of training",
    )
    tp.add_argument(
        "--pretrained",
        default=None,
        help="local paddlenlp pretrained dir to use instead of training (TeacherConfig)",
    )
    tp.add_argument("--max-steps", type=int, default=None, help="MLM training steps")
    tp.add_argument("--seed", type=int, default=None, help="random seed")
    add_config_flags(tp, "teacher")
    tp.set_defaults(func=_pretrain_teacher)

    dp = add_stage_parser(subparsers, "distill", "1  general distillation of a student encoder")
    dp.add_argument("--corpus", required=True, help="corpus dir (or s3:// prefix) of *.txt shards")
    dp.add_argument(
        "--teacher",
        required=True,
        help="teacher model dir (pretrain-teacher output or paddlenlp pretrained dir)",
    )
    dp.add_argument("--out", required=True, help="output student model dir (or s3:// prefix)")
    dp.add_argument("--vocab", default=None, help="tokenizer dir (default: the teacher dir)")
    dp.add_argument(
        "--checkpoint-dir",
        default="",
        help="local dir or s3:// URI for checkpoints; resumes from the newest",
    )
    dp.add_argument(
        "--num-layers",
        type=int,
        default=None,
        help="student layers (2/4/6; default: the profile's); the last one is distilled",
    )
    dp.add_argument(
        "--teacher-layer", type=int, default=None, help="1-based teacher layer distilled"
    )
    dp.add_argument(
        "--num-relation-heads", type=int, default=None, help="heads the relations are split into"
    )
    dp.add_argument(
        "--alpha", type=float, default=None, help="weight of head relations (0 in the recipe)"
    )
    dp.add_argument(
        "--beta", type=float, default=None, help="weight of sample relations (1 in the recipe)"
    )
    dp.add_argument("--learning-rate", type=float, default=None, help="peak learning rate")
    dp.add_argument("--batch-size", type=int, default=None, help="sequences per step")
    dp.add_argument("--max-seq-len", type=int, default=None, help="tokens per sequence")
    dp.add_argument("--max-steps", type=int, default=None, help="training steps")
    dp.add_argument("--warmup-steps", type=int, default=None, help="linear warm-up steps")
    dp.add_argument("--save-steps", type=int, default=None, help="checkpoint every N steps")
    dp.add_argument("--logging-steps", type=int, default=None, help="log every N steps")
    dp.add_argument("--amp", action="store_true", default=None, help="mixed precision (GPU)")
    dp.add_argument(
        "--gpus-per-node",
        type=int,
        default=1,
        help="data-parallel ranks on this node, one per GPU (Paddle's launcher)",
    )
    dp.add_argument("--seed", type=int, default=None, help="random seed")
    add_config_flags(dp, "distill")
    dp.set_defaults(func=_distill)


def _pretrain_teacher(args: argparse.Namespace) -> int:
    from ppminilm.runner import pretrain_teacher

    summary = pretrain_teacher(
        args.out,
        corpus=args.corpus,
        vocab=args.vocab,
        profile=args.profile,
        overrides=overrides_of(args, "teacher"),
        teacher_uri=args.teacher_uri,
        pretrained=args.pretrained,
        max_steps=args.max_steps,
        seed=args.seed,
    )
    return finish(summary, args)


def _distill(args: argparse.Namespace) -> int:
    from ppminilm.runner import distill

    layers: dict[str, Any] = {}
    if args.num_layers is not None:
        layers["student"] = {"num_layers": args.num_layers}
    summary = distill(
        args.teacher,
        args.out,
        corpus=args.corpus,
        vocab=args.vocab,
        profile=args.profile,
        overrides=overrides_of(args, "distill"),
        checkpoint_uri=args.checkpoint_dir,
        gpus_per_node=args.gpus_per_node,
        **layers,
        student_layer=args.num_layers,
        teacher_layer=args.teacher_layer,
        num_relation_heads=args.num_relation_heads,
        alpha=args.alpha,
        beta=args.beta,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        max_seq_len=args.max_seq_len,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_steps,
        save_steps=args.save_steps,
        logging_steps=args.logging_steps,
        use_amp=args.amp,
        seed=args.seed,
    )
    if summary.result.get("rank", 0):  # issue 14: under Paddle's launcher rank 0 reports
        args.summary = None
    return finish(summary, args)
