"""``make bench``: speed and accuracy side by side (``python -m benchmarks.run --gpu 0|1``).

Speed rows (seed shapes, random weights, vocab 21128): Paddle Inference CPU BERT-base 12L-768H
FP32, 6L-768H FP32, 6L pruned 0.75 FP32 and INT8; the same pruned model through paddle2onnx +
onnxruntime FP32 and dynamic INT8; with ``--gpu 1`` TensorRT FP32/FP16/INT8 rows. Accuracy
columns come from the local profile's trained 6L-64H student (fine-tuned, pruned, quantized here)
on the full local review dev set. Timing schedule: :mod:`benchmarks.timing`. Outputs in
``--out``: ``bench.md``, ``bench.json``, ``profile.txt`` (unless ``--no-profile`` and no speed goal
is missed), ``pipeline_timing.json`` (``--pipeline``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from ppminilm.errors import exit_code_of, is_expected

logger = logging.getLogger("benchmarks.run")

BENCH_JSON = "bench.json"
BENCH_MD = "bench.md"
PROFILE_TXT = "profile.txt"
#: Mark on accuracies that come from the trained local models, not the timed seed shapes.
TRAINED_MARK = " †"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line of the bench."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu", type=int, choices=[0, 1], default=0, help="1: add TensorRT rows")
    p.add_argument("--out", default="runs/bench")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per engine")
    p.add_argument("--warmup", type=int, default=20, help="warm-up batches per model")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (median reported)")
    p.add_argument("--timed-batches", type=int, default=2, help="dev batches per timed pass")
    p.add_argument("--finetune-steps", type=int, default=0, help="0: one epoch (local profile)")
    p.add_argument("--prune-epochs", type=int, default=1)
    p.add_argument("--prune-steps", type=int, default=0, help="> 0: stop pruning after N steps")
    p.add_argument("--from-run", default="", help="`make run` output dir: start from its student")
    p.add_argument(
        "--no-profile",
        dest="profile",
        action="store_false",
        help="skip the oneDNN-verbose profile unless a speed goal is missed",
    )
    p.add_argument("--pipeline", action="store_true", help="also time `make run` (~10+ min)")
    p.add_argument("--pipeline-only", action="store_true", help="only time `make run`")
    return p.parse_args(argv)


def check_gpu() -> None:
    """Fail fast when TensorRT rows are asked of a paddle without CUDA/TensorRT."""
    from ppminilm.config import InferConfig
    from ppminilm.inference.predictor import require_device

    require_device(InferConfig(device="gpu", use_trt=True))


def _peak_rss_mib() -> float:
    """Peak resident set of this process (MiB; ru_maxrss is KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Build the models, time and score every row, evaluate the goals; returns bench.json."""
    import numpy as np

    from benchmarks import models as bm
    from benchmarks.onnx_bench import (
        OnnxUnavailableError,
        export_onnx,
        ort_profile,
        quantize_onnx_dynamic,
    )
    from benchmarks.rows import (
        open_ort,
        open_paddle,
        ort_accuracy,
        paddle_accuracy,
        time_rows,
    )
    from benchmarks.timing import TimingPlan, split_batches
    from ppminilm.compat.versions import package_versions
    from ppminilm.config import DataConfig
    from ppminilm.config.profiles import config_for
    from ppminilm.data import load_task_dir
    from ppminilm.data.local import build_local
    from ppminilm.data.tokenizer import encode_examples, load_tokenizer

    t0 = time.perf_counter()
    stage_s: dict[str, float] = {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = TimingPlan(
        warmup_batches=args.warmup, repeats=args.repeats, timed_batches=args.timed_batches
    )
    load_start = _loadavg()

    def lap(name: str, since: float) -> float:
        stage_s[name] = round(time.perf_counter() - since, 1)
        logger.info(
            "bench stage %s: %.1f s (total %.0f s)", name, stage_s[name], time.perf_counter() - t0
        )
        return time.perf_counter()

    t = time.perf_counter()
    summary = build_local(out / "data", config_for(DataConfig, "local"))
    task_dir = Path(summary["tasks"]["local_reviews"])
    vocab_dir = Path(summary["vocab"]).parent
    data = load_task_dir(task_dir)
    tokenizer = load_tokenizer(vocab_dir)
    label_ids = {label: i for i, label in enumerate(data.labels)}
    dev128 = encode_examples(tokenizer, data.dev, data.task, plan.seq_len)
    batches = split_batches(dev128, plan.batch_size)
    t = lap("data", t)

    seeds = bm.export_seed_models(out / "models", data, vocab_dir, plan.seq_len)
    t = lap("export_seed_models", t)
    seed_q = bm.quantize_seed_model(
        out / "models", seeds["6l_pruned"].inference_dir, data, plan.seq_len
    )
    t = lap("quantize_seed", t)
    init = bm.find_distilled_student(args.from_run) if args.from_run else None
    trained = bm.train_local_models(
        out / "trained",
        task_dir,
        vocab_dir,
        init=init,
        finetune_steps=args.finetune_steps,
        prune_epochs=args.prune_epochs,
        prune_steps=args.prune_steps,
    )
    t = lap("train_local_models", t)

    # ---- speed rows (CPU)

    def meta(key: str, seed_key: str, engine: str) -> dict[str, Any]:
        s = seeds[seed_key]
        return {
            "key": key,
            "model": s.label,
            "engine": engine,
            "params": s.params,
            "flops": s.flops,
        }

    # Open every CPU row first, then time them together, interleaved round by round.
    opened = []
    for key in ("bert_base", "6l", "6l_pruned"):
        m = {**meta(f"paddle_{key}_fp32", key, "Paddle CPU FP32"), "baseline": key == "bert_base"}
        opened.append(open_paddle(m, seeds[key].inference_dir, "fp32", batches, plan, args.threads))
    int8_dir = Path(seed_q["model_dir"])
    m = meta("paddle_6l_pruned_int8", "6l_pruned", "Paddle CPU INT8")
    opened.append(open_paddle(m, int8_dir, "int8", batches, plan, args.threads))

    onnx_dir = out / "onnx"
    ort_ops: dict[str, Any] | None = None
    missing: list[dict[str, Any]] = []
    try:
        fp32_onnx = export_onnx(seeds["6l_pruned"].inference_dir, onnx_dir / "6l_pruned.onnx")
        m = meta("ort_6l_pruned_fp32", "6l_pruned", "onnxruntime FP32")
        opened.append(open_ort(m, fp32_onnx, args.threads))
        q = quantize_onnx_dynamic(fp32_onnx, onnx_dir / "6l_pruned_int8.onnx")
        prof = ort_profile(q["int8_path"], batches[0], args.threads, onnx_dir / "ort_profile")
        ort_ops = prof["op_times"]
        m = meta("ort_6l_pruned_int8", "6l_pruned", "onnxruntime INT8 (dynamic)")
        opened.append(open_ort(m, q["int8_path"], args.threads, {"quantize": q, "profile": prof}))
    except OnnxUnavailableError as exc:
        logger.error("ONNX rows not run: %s", exc)
        done = {row["key"] for _, row in opened}
        for key, engine in (("fp32", "onnxruntime FP32"), ("int8", "onnxruntime INT8 (dynamic)")):
            if f"ort_6l_pruned_{key}" not in done:
                m = meta(f"ort_6l_pruned_{key}", "6l_pruned", engine)
                missing.append({**m, "device": "cpu", "error": str(exc)})
    t = lap("open_cpu_rows", t)
    rows = time_rows(opened, batches, plan) + missing
    del opened  # frees the predictors and sessions
    t = lap("time_cpu_rows", t)

    if args.gpu:
        rows += _trt_rows(seeds, int8_dir, batches, plan, args.threads, out / "trt", meta)
        t = lap("tensorrt_rows", t)

    # ---- accuracy of the trained local models (full dev, their own max_seq_len)
    seq = trained["seq_len"]
    dev_small = encode_examples(load_tokenizer(trained["fp32_6l"]), data.dev, data.task, seq)
    labels = np.asarray([label_ids[e["label"]] for e in data.dev], dtype=np.int64)
    acc: dict[str, Any] = {
        "fp32_6l": paddle_accuracy(
            trained["fp32_6l"], "fp32", dev_small, labels, plan.batch_size, args.threads
        ),
        "fp32_pruned": paddle_accuracy(
            trained["fp32_pruned"], "fp32", dev_small, labels, plan.batch_size, args.threads
        ),
        "int8_pruned": paddle_accuracy(
            trained["int8_pruned"], "int8", dev_small, labels, plan.batch_size, args.threads
        ),
    }
    try:
        tr_onnx = export_onnx(trained["fp32_pruned"], onnx_dir / "trained_pruned.onnx")
        acc["ort_fp32_pruned"] = ort_accuracy(
            tr_onnx, dev_small, labels, plan.batch_size, args.threads, "onnxruntime FP32"
        )
        tq = quantize_onnx_dynamic(tr_onnx, onnx_dir / "trained_pruned_int8.onnx")
        acc["ort_int8_pruned"] = ort_accuracy(
            tq["int8_path"],
            dev_small,
            labels,
            plan.batch_size,
            args.threads,
            "onnxruntime INT8 (dynamic)",
        )
    except OnnxUnavailableError as exc:
        logger.error("ONNX accuracy not measured: %s", exc)
    t = lap("accuracy", t)
    source = {
        "paddle_6l_fp32": "fp32_6l",
        "paddle_6l_pruned_fp32": "fp32_pruned",
        "paddle_6l_pruned_int8": "int8_pruned",
        "ort_6l_pruned_fp32": "ort_fp32_pruned",
        "ort_6l_pruned_int8": "ort_int8_pruned",
    }
    for row in rows:
        name = source.get(row["key"]) if row["device"] == "cpu" else None
        if name and name in acc:
            row.update(
                accuracy=acc[name]["accuracy"], accuracy_mark=TRAINED_MARK, accuracy_from=name
            )
        else:
            row["accuracy_note"] = (
                "n/a (random weights)"
                if row["key"].startswith(("paddle_bert", "trt_bert"))
                else "n/a"
            )

    from benchmarks.notes import gap_notes
    from benchmarks.table import add_speedups, evaluate_goals

    add_speedups(rows)
    goals = evaluate_goals(rows, acc["fp32_6l"]["accuracy"], acc["int8_pruned"]["accuracy"])
    speed_missed = any(g["met"] is False for g in goals if "accuracy" not in g["goal"])
    profiles: dict[str, Any] = {}
    if speed_missed or args.profile:
        profiles = _profile(
            seeds["6l_pruned"].inference_dir, int8_dir, batches[0], args.threads, out
        )
        t = lap("profile", t)
    notes = gap_notes(
        goals,
        profiles.get("paddle_int8"),
        profiles.get("paddle_fp32"),
        ort_ops,
        {k: v["accuracy"] for k, v in acc.items()},
    )

    pipeline = None
    if args.pipeline:
        # A fresh small process measures it: a child forked from this (multi-GiB) process
        # would report this process's memory as its own peak RSS.
        import subprocess

        cmd = [sys.executable, "-m", "benchmarks.pipeline_timing", "--out", str(out)]
        subprocess.run(cmd, check=False)
        pipeline = json.loads((out / "pipeline_timing.json").read_text(encoding="utf-8"))
        t = lap("pipeline", t)
    elif (out / "pipeline_timing.json").is_file():
        pipeline = json.loads((out / "pipeline_timing.json").read_text(encoding="utf-8"))
        pipeline["reused_from_earlier_run"] = True

    return {
        "plan": plan.to_dict(),
        "plan_text": plan.describe(),
        "rows": rows,
        "accuracy": acc,
        "goals": goals,
        "notes": notes,
        "profiles": profiles,
        "ort_int8_op_times": ort_ops,
        "trained": {k: v for k, v in trained.items() if k not in ("finetune", "prune", "quantize")}
        | {
            "finetune_dev_acc": trained["finetune"]["best_dev_acc"],
            "finetune_steps": trained["finetune"]["steps"],
            "prune_dev_acc": trained["prune"]["pruned_dev_acc"],
            "quantize_best": trained["quantize"]["best"],
        },
        "seed_ptq": {k: seed_q[k] for k in ("best", "int8_check", "calib_examples")},
        "vocab": (
            "seed shapes use vocab 21128 (the seed's); inputs are ids of the local vocab "
            f"(size {summary['vocab_size']})"
        ),
        "pipeline": pipeline,
        "stage_seconds": stage_s,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": _peak_rss_mib(),
        "loadavg_start": load_start,
        "loadavg_end": _loadavg(),
        "threads": args.threads,
        "versions": package_versions(),
    }


def _trt_rows(seeds, int8_dir, batches, plan, threads, work, meta) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """TensorRT rows (GPU mode): FP32 and FP16 for every seed shape, INT8 for the PTQ model."""
    from benchmarks.rows import open_paddle, time_rows

    work.mkdir(parents=True, exist_ok=True)
    opened = []
    for key in ("bert_base", "6l", "6l_pruned"):
        for precision in ("fp32", "fp16"):
            m = {
                **meta(f"trt_{key}_{precision}", key, f"TensorRT {precision.upper()}"),
                "baseline": key == "bert_base" and precision == "fp32",
            }
            model_dir = seeds[key].inference_dir
            opened.append(open_paddle(m, model_dir, precision, batches, plan, threads, "gpu", work))
    m = meta("trt_6l_pruned_int8", "6l_pruned", "TensorRT INT8")
    opened.append(open_paddle(m, int8_dir, "int8", batches, plan, threads, "gpu", work))
    return time_rows(opened, batches, plan)


def _profile(
    fp32_dir: Path, int8_dir: Path, batch: dict[str, Any], threads: int, out: Path
) -> dict[str, Any]:
    """oneDNN-verbose profiles of the pruned FP32 and INT8 models (one batch each)."""
    import numpy as np

    from benchmarks.onednn_profile import profile_model

    batch_file = out / "profile_batch.npz"
    np.savez(batch_file, **batch)
    return {
        "paddle_fp32": profile_model(fp32_dir, "fp32", batch_file, threads),
        "paddle_int8": profile_model(int8_dir, "int8", batch_file, threads),
    }


def write_outputs(result: dict[str, Any], out: Path) -> str:
    """Write bench.json, bench.md and (when profiled) profile.txt atomically; returns the md."""
    from benchmarks.render import render_markdown, render_profile

    text = render_markdown(result)
    files = {BENCH_JSON: json.dumps(result, indent=2, ensure_ascii=False) + "\n", BENCH_MD: text}
    if result["profiles"] or result.get("ort_int8_op_times"):
        files[PROFILE_TXT] = render_profile(result)
    for name, content in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, out / name)
    return text


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2: bad input, 20: the device is unavailable)."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    # Importing paddle sets the root logger to WARNING; pin our loggers so progress shows.
    for name in ("benchmarks", "ppminilm"):
        logging.getLogger(name).setLevel(logging.INFO)
    out = Path(args.out)
    try:
        if args.gpu:
            check_gpu()  # before any work: the GPU rows are the point of --gpu 1
        if args.pipeline_only:
            from benchmarks.pipeline_timing import run_pipeline_timed, stage_table

            timing = run_pipeline_timed(out)
            print(stage_table(timing))
            print(f"peak RSS (largest process): {timing['peak_rss_mib']:.0f} MiB")
            return 0 if timing["returncode"] == 0 else 1
        result = run_bench(args)
    except Exception as exc:
        if not is_expected(exc):
            raise
        # Bad input exits 2; "paddle is a CPU-only build" (DeviceUnavailableError) exits 20.
        logger.error("bench failed: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    text = write_outputs(result, out)
    print(text)
    print(
        f"Wrote {out / BENCH_MD}, {out / BENCH_JSON}"
        + (f", {out / PROFILE_TXT}" if (out / PROFILE_TXT).exists() else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
