"""``ppminilm infer`` (benchmark, predict, INT8-kernel check) and ``ppminilm report``.

Examples::

    ppminilm infer bench --model-dir runs/infer --task-dir data/tasks/local_reviews \\
        --out-dir runs/bench --profile local --precision fp32
    ppminilm infer check-int8 --model-dir runs/quant --precision int8
    ppminilm infer predict --model-dir runs/infer 这个东西很好用 质量太差了
    ppminilm report --summary runs/run_summary.json --out-dir runs/report
"""

from __future__ import annotations

import argparse
import json
from typing import Any, cast

from ppminilm.config import ENGINES, PRECISIONS, InferConfig
from ppminilm.config.profiles import PROFILES, stage_config

#: Flag name -> InferConfig field for the overrides given on the command line.
_FLAGS = {
    "device": "device",
    "precision": "precision",
    "batch_size": "batch_size",
    "max_seq_len": "max_seq_len",
    "warmup_batches": "warmup_batches",
    "repeats": "repeats",
    "threads": "num_threads",
    "engine": "engine",
}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="local", choices=sorted(PROFILES))
    parser.add_argument(
        "--config", default=None, help="JSON file of InferConfig overrides (applied before flags)"
    )
    parser.add_argument("--device", choices=("cpu", "gpu"), default=None)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="int8 on cpu enables oneDNN INT8 kernels (quantized models)",
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-seq-len", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="CPU math threads")
    parser.add_argument("--no-mkldnn", action="store_true", help="disable oneDNN on cpu")
    parser.add_argument("--no-trt", action="store_true", help="plain GPU, no TensorRT")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help="inference engine (default: paddle; for --model-dir, the one serving.json names)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``infer {bench,predict,check-int8}`` and ``report``."""
    parser = subparsers.add_parser("infer", help="Paddle Inference: benchmark, predict, check")
    sub = parser.add_subparsers(dest="infer_command", metavar="ACTION", required=True)

    bench = sub.add_parser("bench", help="time a whole split end to end and score it")
    bench.add_argument("--model-dir", required=True, help="exported inference dir")
    bench.add_argument("--task-dir", required=True, help="task directory")
    bench.add_argument("--out-dir", required=True, help="gets benchmark.json")
    bench.add_argument("--split", default="dev", choices=("train", "dev", "calib", "test"))
    bench.add_argument("--warmup-batches", type=int, default=None)
    bench.add_argument("--repeats", type=int, default=None)
    _add_config_flags(bench)
    bench.set_defaults(func=_bench)

    pred = sub.add_parser("predict", help="label texts (or 'a<TAB>b' pairs)")
    pred.add_argument("--model-dir", required=True)
    pred.add_argument("texts", nargs="+", help="texts; a TAB separates the two texts of a pair")
    _add_config_flags(pred)
    pred.set_defaults(func=_predict)

    check = sub.add_parser("check-int8", help="show whether INT8 kernels really run")
    check.add_argument("--model-dir", required=True)
    _add_config_flags(check)
    check.set_defaults(func=_check_int8)

    report = subparsers.add_parser(
        "report", help="build report.md/.html + plots from a run summary JSON"
    )
    report.add_argument(
        "--summary", required=True, help="run summary JSON (see ppminilm.report.render)"
    )
    report.add_argument("--out-dir", required=True)
    report.set_defaults(func=_report)


def _config(args: argparse.Namespace, model_dir: str | None = None) -> InferConfig:
    overrides: dict[str, Any] = {}
    if args.config:
        overrides.update(InferConfig.load(args.config).to_dict())
    for flag, field in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[field] = value
    if args.no_mkldnn:
        overrides["use_mkldnn"] = False
    if args.no_trt:
        overrides["use_trt"] = False
    if model_dir is not None:
        from ppminilm.modeling.export import read_serving_config

        serving = read_serving_config(model_dir)
        # Prediction uses the model's own length unless told otherwise.
        overrides.setdefault("max_seq_len", serving.max_seq_len)
        # A model converted for another engine runs there, at the precision it was made in.
        if serving.engine != "paddle":
            overrides.setdefault("engine", serving.engine)
            overrides.setdefault("precision", serving.precision)
    return cast(InferConfig, stage_config("infer", args.profile, overrides))


def _bench(args: argparse.Namespace) -> int:
    from ppminilm.inference.benchmark import run_infer

    result = run_infer(args.model_dir, args.task_dir, args.out_dir, _config(args), split=args.split)
    keys = (
        "task",
        "split",
        "examples",
        "precision",
        "threads",
        "total_s",
        "throughput",
        "latency_ms",
        "accuracy",
        "benchmark_file",
    )
    headline = {k: result[k] for k in keys}
    headline["runs_int8"] = result["int8_check"].get("runs_int8")
    print(json.dumps(headline, ensure_ascii=False))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ppminilm.inference.benchmark import predict

    items: list[Any] = [tuple(t.split("\t", 1)) if "\t" in t else t for t in args.texts]
    for text, label in zip(
        args.texts, predict(args.model_dir, items, _config(args, args.model_dir)), strict=True
    ):
        print(f"{label}\t{text}")
    return 0


def _check_int8(args: argparse.Namespace) -> int:
    from ppminilm.inference.benchmark import detect_int8_kernels

    print(json.dumps(detect_int8_kernels(args.model_dir, _config(args, args.model_dir)), indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from ppminilm.report.render import run_report

    print(json.dumps(run_report(args.summary, args.out_dir), indent=2))
    return 0
