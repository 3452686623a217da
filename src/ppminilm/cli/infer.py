"""``ppminilm infer`` (benchmark, predict, INT8-kernel check) and ``ppminilm report``.

Examples::

    ppminilm infer bench --model-dir runs/infer --task-dir data/tasks/local_reviews \\
        --out-dir runs/bench --precision fp32
    ppminilm infer check-int8 --model-dir runs/quant --precision int8
    ppminilm infer predict --model-dir runs/infer 这个东西很好用 质量太差了
    ppminilm report --summary runs/run_summary.json --out-dir runs/report
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ppminilm.cli._common import (
    HelpFormatter,
    add_config_flags,
    finish,
    overrides_of,
)
from ppminilm.config import ENGINES, PRECISIONS, InferConfig, resolve
from ppminilm.contracts import BENCHMARK_FILE
from ppminilm.runner import emit


def _add_infer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: cpu")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="int8 on cpu enables oneDNN INT8 kernels (default: the model's)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="examples per batch")
    parser.add_argument(
        "--max-seq-len", type=int, default=None, help="tokens per example (default: the model's)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU math threads")
    parser.add_argument("--no-mkldnn", action="store_true", help="disable oneDNN on cpu")
    parser.add_argument("--no-trt", action="store_true", help="plain GPU, no TensorRT")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="inference engine (default: paddle; for --model-dir, the one serving.json names)",
    )
    add_config_flags(parser, "infer")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "device": args.device,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "num_threads": args.threads,
        "use_mkldnn": False if args.no_mkldnn else None,
        "use_trt": False if args.no_trt else None,
        "warmup_batches": getattr(args, "warmup_batches", None),
        "repeats": getattr(args, "repeats", None),
        "engine": args.engine,
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``infer {bench,predict,check-int8}`` and ``report``."""
    parser = subparsers.add_parser(
        "infer",
        help="5  Paddle Inference: benchmark, predict, INT8 check",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="infer_command", metavar="ACTION", required=True)

    bench = sub.add_parser(
        "bench", help="time a whole split end to end and score it", formatter_class=HelpFormatter
    )
    bench.add_argument("--model-dir", required=True, help="exported inference dir")
    bench.add_argument("--task-dir", required=True, help="task directory")
    bench.add_argument("--out-dir", required=True, help=f"gets {BENCHMARK_FILE}")
    bench.add_argument(
        "--split",
        default="dev",
        choices=("train", "dev", "test"),
        help="labelled split to time and score",
    )
    bench.add_argument("--warmup-batches", type=int, default=None, help="untimed batches per pass")
    bench.add_argument("--repeats", type=int, default=None, help="timed passes")
    _add_infer_flags(bench)
    bench.set_defaults(func=_bench)

    pred = sub.add_parser(
        "predict", help="label texts (or 'a<TAB>b' pairs)", formatter_class=HelpFormatter
    )
    pred.add_argument("--model-dir", required=True, help="exported inference dir")
    pred.add_argument("texts", nargs="+", help="texts; a TAB separates the two texts of a pair")
    _add_infer_flags(pred)
    pred.set_defaults(func=_predict)

    check = sub.add_parser(
        "check-int8", help="show whether INT8 kernels really run", formatter_class=HelpFormatter
    )
    check.add_argument("--model-dir", required=True, help="exported inference dir")
    _add_infer_flags(check)
    check.set_defaults(func=_check_int8)

    report = subparsers.add_parser(
        "report",
        help="5  build report.md/.html + plots from a run summary JSON",
        formatter_class=HelpFormatter,
    )
    report.add_argument(
        "--summary", required=True, help="run summary JSON (see ppminilm.report.render)"
    )
    report.add_argument("--out-dir", required=True, help="report directory (all or nothing)")
    report.set_defaults(func=_report)


def _model_config(args: argparse.Namespace) -> InferConfig:
    """Settings for predict/check-int8: the model's own length and precision by default."""
    from ppminilm.inference.benchmark import model_fields

    fields = _fields(args)
    # A model converted for another engine runs there, at the precision it was made in.
    for key, value in model_fields(args.model_dir).items():
        fields[key] = fields[key] or value
    return resolve(InferConfig, args.profile, overrides_of(args, "infer"), **fields)


def _bench(args: argparse.Namespace) -> int:
    from ppminilm.runner import benchmark

    fields = {k: v for k, v in _fields(args).items() if k != "device"}
    summary = benchmark(
        args.task_dir,
        args.model_dir,
        Path(args.out_dir) / BENCHMARK_FILE,
        device=args.device or "cpu",
        split=args.split,
        profile=args.profile,
        overrides=overrides_of(args, "infer"),
        **fields,
    )
    return finish(summary, args)


def _predict(args: argparse.Namespace) -> int:
    from ppminilm.inference.benchmark import predict

    items: list[Any] = [tuple(t.split("\t", 1)) if "\t" in t else t for t in args.texts]
    for text, label in zip(
        args.texts, predict(args.model_dir, items, _model_config(args)), strict=True
    ):
        print(f"{label}\t{text}")
    return 0


def _check_int8(args: argparse.Namespace) -> int:
    from ppminilm.inference.benchmark import detect_int8_kernels

    emit(detect_int8_kernels(args.model_dir, _model_config(args)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from ppminilm.report.render import run_report

    emit(run_report(args.summary, args.out_dir))
    return 0
