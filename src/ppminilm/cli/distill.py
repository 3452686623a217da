"""``ppminilm pretrain-teacher`` / ``distill``: stage 1 from the shell.

Examples::

    ppminilm pretrain-teacher --corpus data/corpus --vocab data/vocab --out runs/teacher
    ppminilm distill --corpus data/corpus --teacher runs/teacher --out runs/student \\
        --checkpoint-dir runs/ckpt
    python -m paddle.distributed.launch --gpus 0,1,2,3 -m ppminilm distill --profile cluster \\
        --corpus /data/corpus --teacher /models/roberta-wwm-ext-large --out /out/student \\
        --checkpoint-dir s3://bucket/run1/ckpt

Both print the stage summary as JSON on stdout. A pre-empted ``distill`` (SIGTERM) exits 143
after checkpointing; the same command resumes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ppminilm.config.profiles import PROFILES, stage_config
from ppminilm.io import read_json_file


def _read_overrides(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    from ppminilm import storage

    if storage.is_remote(path):  # PaddleJob workers get their config from object storage
        data = storage.read_json(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of config fields")
        return data
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {p} does not exist")
    data = read_json_file(p, ValueError)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object of config fields")
    return data


def _set(overrides: dict[str, Any], **flags: Any) -> dict[str, Any]:
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


def _emit(summary: dict[str, Any], path: str | None) -> None:
    text = json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n"
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    sys.stdout.write(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain-teacher`` and ``distill``."""
    tp = subparsers.add_parser(
        "pretrain-teacher", help="MLM-train the local teacher (or take a pretrained dir)"
    )
    tp.add_argument("--corpus", required=True, help="corpus dir of *.txt shards")
    tp.add_argument("--vocab", required=True, help="tokenizer dir with vocab.txt")
    tp.add_argument("--out", required=True, help="output teacher model dir")
    tp.add_argument("--profile", default="local", choices=sorted(PROFILES))
    tp.add_argument("--config", default=None, help="JSON file of TeacherConfig overrides")
    tp.add_argument(
        "--pretrained",
        default=None,
        help="local paddlenlp pretrained dir to use instead of training",
    )
    tp.add_argument("--max-steps", type=int, default=None)
    tp.add_argument("--seed", type=int, default=None)
    tp.add_argument("--summary", default=None, help="also write the summary JSON here")
    tp.set_defaults(func=_pretrain_teacher)

    dp = subparsers.add_parser("distill", help="general distillation of a student encoder")
    dp.add_argument("--corpus", required=True, help="corpus dir of *.txt shards")
    dp.add_argument(
        "--teacher",
        required=True,
        help="teacher model dir (pretrain-teacher output or paddlenlp pretrained)",
    )
    dp.add_argument("--out", required=True, help="output student model dir")
    dp.add_argument("--vocab", default=None, help="tokenizer dir (default: the teacher dir)")
    dp.add_argument(
        "--checkpoint-dir",
        default=None,
        help="local dir or s3:// URI for checkpoints; resumes from the newest",
    )
    dp.add_argument("--profile", default="local", choices=sorted(PROFILES))
    dp.add_argument("--config", default=None, help="JSON file of DistillConfig overrides")
    dp.add_argument(
        "--num-layers",
        type=int,
        default=None,
        help="student layers (2/4/6); the last one is distilled",
    )
    dp.add_argument("--teacher-layer", type=int, default=None)
    dp.add_argument("--num-relation-heads", type=int, default=None)
    dp.add_argument("--alpha", type=float, default=None)
    dp.add_argument("--beta", type=float, default=None)
    dp.add_argument("--learning-rate", type=float, default=None)
    dp.add_argument("--batch-size", type=int, default=None)
    dp.add_argument("--max-seq-len", type=int, default=None)
    dp.add_argument("--max-steps", type=int, default=None)
    dp.add_argument("--warmup-steps", type=int, default=None)
    dp.add_argument("--save-steps", type=int, default=None)
    dp.add_argument("--logging-steps", type=int, default=None)
    dp.add_argument("--amp", action="store_true", default=None, help="mixed precision (GPU)")
    dp.add_argument("--seed", type=int, default=None)
    dp.add_argument("--summary", default=None, help="also write the summary JSON here")
    dp.set_defaults(func=_distill)


def _pretrain_teacher(args: argparse.Namespace) -> int:
    from ppminilm.config import TeacherConfig
    from ppminilm.stages.teacher import run_pretrain_teacher

    overrides = _set(
        _read_overrides(args.config),
        pretrained=args.pretrained,
        max_steps=args.max_steps,
        seed=args.seed,
    )
    cfg = stage_config("teacher", args.profile, overrides)
    assert isinstance(cfg, TeacherConfig)
    _emit(run_pretrain_teacher(args.corpus, args.vocab, args.out, cfg), args.summary)
    return 0


def _distill(args: argparse.Namespace) -> int:
    from ppminilm.config import DistillConfig
    from ppminilm.stages.distill.train import run_distill
    from ppminilm.training.checkpoint import Preempted

    overrides = _set(
        _read_overrides(args.config),
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
    if args.num_layers is not None:
        overrides["student"] = {**overrides.get("student", {}), "num_layers": args.num_layers}
        overrides["student_layer"] = args.num_layers
    cfg = stage_config("distill", args.profile, overrides)
    assert isinstance(cfg, DistillConfig)
    import tempfile

    from ppminilm import storage

    # Inputs/outputs may be s3:// prefixes (multi-node PaddleJob workers see no KFP artifacts).
    with tempfile.TemporaryDirectory(prefix="ppminilm-distill-") as work:
        corpus, teacher, vocab = (
            storage.local_copy(uri, Path(work) / name) if uri else None
            for uri, name in (
                (args.corpus, "corpus"),
                (args.teacher, "teacher"),
                (args.vocab, "vocab"),
            )
        )
        remote_out = storage.is_remote(args.out)
        out = Path(work) / "student" if remote_out else Path(args.out)
        try:
            summary = run_distill(
                corpus,  # type: ignore[arg-type]
                teacher,  # type: ignore[arg-type]
                out,
                cfg,
                checkpoint_dir=args.checkpoint_dir,
                vocab_dir=vocab,
            )
        except Preempted as exc:
            return int(exc.code) if isinstance(exc.code, int) else 1
        if remote_out and (out / "model_config.json").is_file():  # rank 0 saved the student
            storage.upload_dir(out, args.out)
            summary["model_dir"] = args.out
    # issue 14: under Paddle's launcher every rank returns a summary; rank 0's is the record.
    _emit(summary, args.summary if summary.get("rank", 0) == 0 else None)
    return 0
