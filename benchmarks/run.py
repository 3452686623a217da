"""``make bench``: speed and accuracy side by side (``python -m benchmarks.run --gpu 0|1``).

Speed rows (seed shapes, random weights, vocab 21128), batch 32 x 128: Paddle CPU BERT-base
12L-768H FP32 and 6L-768H FP32 (baselines), then the pruned 6L-768H on every engine and
precision of :data:`benchmarks.variants.VARIANTS` (Paddle FP32/BF16/INT8, OpenVINO FP32/BF16/
INT8 NNCF/INT8 of our PTQ, onnxruntime FP32/INT8 dynamic/INT8 static QDQ), all interleaved;
batch-1 p50/p99 of the same engines; throughput vs batch size and threads of the fastest INT8
engine (``scaling.png``); with ``--gpu 1`` TensorRT FP32/FP16/INT8 rows. Accuracy columns come
from the local profile's trained 6L-64H student (fine-tuned, pruned, quantized and converted
here the same way) on the full local review dev set. Timing schedule: :mod:`benchmarks.timing`.
Outputs in ``--out``: ``bench.md``, ``bench.json``, ``scaling.png``, ``profile.txt`` (unless
``--no-profile`` and no speed goal is missed), ``pipeline_timing.json`` (``--pipeline``).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ppminilm.errors import exit_code_of, is_expected
from ppminilm.io import atomic_write_json, atomic_write_text, read_json_file

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
    p.add_argument("--warmup", type=int, default=10, help="warm-up batches per model")
    p.add_argument("--repeats", type=int, default=5, help="timed passes (median reported)")
    p.add_argument("--timed-batches", type=int, default=2, help="dev batches per timed pass")
    p.add_argument("--latency-samples", type=int, default=100, help="batch-1 examples timed")
    p.add_argument("--latency-warmup", type=int, default=10, help="batch-1 warm-up examples")
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
    from benchmarks.cpu_rows import (
        attach_accuracy,
        fastest_int8,
        open_cpu_rows,
        time_cpu_rows,
        trained_accuracy,
    )
    from benchmarks.timing import TimingPlan, split_batches
    from benchmarks.variants import build_variants
    from ppminilm.compat.versions import package_versions
    from ppminilm.config import DataConfig
    from ppminilm.config.profiles import config_for
    from ppminilm.data import load_task_dir
    from ppminilm.data.local import build_local
    from ppminilm.data.tokenizer import encode_examples, load_tokenizer
    from ppminilm.inference.cpuinfo import cpu_model, isa_flags

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
    pruned_dir = seeds["6l_pruned"].inference_dir
    seed_q = bm.quantize_seed_model(out / "models", pruned_dir, data, plan.seq_len)
    seed_qdq = bm.quantize_seed_model(
        out / "models", pruned_dir, data, plan.seq_len, onnx_format=True
    )
    calib128 = bm.ptq_calibration_inputs(
        pruned_dir, seed_q["model_dir"], seed_q["task_dir"], plan.seq_len
    )
    seed_dirs, seed_errors, seed_info = build_variants(
        pruned_dir,
        Path(seed_q["model_dir"]),
        Path(seed_qdq["model_dir"]),
        calib128,
        seed_q["calib_examples"],
        out / "variants" / "seed",
    )
    t = lap("quantize_seed_variants", t)
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
    seq = trained["seq_len"]
    small_tok = load_tokenizer(trained["fp32_6l"])
    calib_small = bm.ptq_calibration_inputs(
        trained["fp32_pruned"], trained["int8_pruned"], task_dir, seq
    )
    tr_dirs, tr_errors, tr_info = build_variants(
        Path(trained["fp32_pruned"]),
        Path(trained["int8_pruned"]),
        Path(trained["int8_pruned_qdq"]),
        calib_small,
        trained["quantize"]["calib_examples"],
        out / "variants" / "trained",
    )
    t = lap("train_local_models", t)

    # ---- speed rows (CPU): open all, then time them together, interleaved round by round
    opened, missing = open_cpu_rows(seeds, seed_dirs, seed_errors, batches, plan, args.threads)
    t = lap("open_cpu_rows", t)
    rows = (
        time_cpu_rows(opened, batches, plan, dev128, args.latency_samples, args.latency_warmup)
        + missing
    )
    t = lap("time_cpu_rows", t)

    del opened  # frees the predictors and sessions
    # ---- scaling of the fastest INT8 engine (and Paddle INT8 beside it)
    scaling = _scaling(rows, dev128, seed_dirs, plan, out)
    t = lap("scaling", t)

    if args.gpu:
        rows += _trt_rows(
            seeds, Path(seed_q["model_dir"]), batches, plan, args.threads, out / "trt"
        )
        t = lap("tensorrt_rows", t)

    # ---- accuracy of the trained local models (full dev, their own max_seq_len)
    dev_small = encode_examples(small_tok, data.dev, data.task, seq)
    labels = np.asarray([label_ids[e["label"]] for e in data.dev], dtype=np.int64)
    acc = trained_accuracy(
        trained, tr_dirs, tr_errors, dev_small, labels, plan.batch_size, args.threads
    )
    acc["fp32_pruned"] = acc.get("paddle_fp32", {})
    acc["int8_pruned"] = acc.get("paddle_int8", {})
    attach_accuracy(rows, acc, TRAINED_MARK)
    t = lap("accuracy", t)

    from benchmarks.notes import gap_notes
    from benchmarks.table import add_speedups, evaluate_goals

    add_speedups(rows)
    goals = evaluate_goals(rows, acc["fp32_6l"].get("accuracy"), acc["int8_pruned"].get("accuracy"))
    speed_missed = any(g["met"] is False for g in goals if "accuracy" not in g["goal"])
    profiles: dict[str, Any] = {}
    if speed_missed or args.profile:
        profiles = _profile(pruned_dir, Path(seed_q["model_dir"]), batches[0], args.threads, out)
        t = lap("profile", t)
    ort_ops = next((r.get("op_times") for r in rows if r["key"] == "ort_int8_dynamic"), None)
    notes = gap_notes(
        goals,
        profiles.get("paddle_int8"),
        profiles.get("paddle_fp32"),
        ort_ops,
        {k: v.get("accuracy") for k, v in acc.items()},
    )
    repro = _int8_repro(out)
    t = lap("int8_attention_repro", t)

    pipeline = None
    if args.pipeline:
        # A fresh small process measures it: a child forked from this (multi-GiB) process
        # would report this process's memory as its own peak RSS.
        import subprocess

        cmd = [sys.executable, "-m", "benchmarks.pipeline_timing", "--out", str(out)]
        subprocess.run(cmd, check=False)
        pipeline = read_json_file(out / "pipeline_timing.json")
        t = lap("pipeline", t)
    elif (out / "pipeline_timing.json").is_file():
        pipeline = read_json_file(out / "pipeline_timing.json")
        pipeline["reused_from_earlier_run"] = True

    fastest = fastest_int8(rows)
    return {
        "plan": plan.to_dict(),
        "plan_text": plan.describe(),
        "latency_plan": {"warmup": args.latency_warmup, "samples": args.latency_samples},
        "rows": [{k: v for k, v in r.items() if k != "op_times"} for r in rows],
        "accuracy": acc,
        "goals": goals,
        "notes": notes,
        "profiles": profiles,
        "ort_int8_op_times": ort_ops,
        "fastest_int8": fastest["key"] if fastest else None,
        "scaling": scaling,
        "int8_attention_repro": repro,
        "trained": {
            k: v
            for k, v in trained.items()
            if k not in ("finetune", "prune", "quantize", "quantize_qdq")
        }
        | {
            "finetune_dev_acc": trained["finetune"]["best_dev_acc"],
            "finetune_steps": trained["finetune"]["steps"],
            "prune_dev_acc": trained["prune"]["pruned_dev_acc"],
            "quantize_best": trained["quantize"]["best"],
            "calib_examples": trained["quantize"]["calib_examples"],
        },
        "seed_ptq": {k: seed_q[k] for k in ("best", "int8_check", "calib_examples")},
        "peer_quantization": {"seed": seed_info, "trained": tr_info},
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
        "cpu": {"model": cpu_model(), "isa": isa_flags(), "cores": os.cpu_count()},
        "versions": package_versions(),
    }


def _scaling(rows, arrays, dirs, plan, out: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Throughput vs batch size and threads of the fastest INT8 row (and Paddle INT8)."""
    from benchmarks.cpu_rows import fastest_int8
    from benchmarks.rows import open_engine_row
    from benchmarks.scaling import PLOT_FILE, THREADS, measure_scaling, plot_scaling
    from benchmarks.table import PADDLE_INT8
    from benchmarks.variants import BY_KEY
    from ppminilm.inference.cpuinfo import cpu_model

    fastest = fastest_int8(rows)
    if fastest is None:
        return {}
    keys = [fastest["key"]] + ([PADDLE_INT8] if fastest["key"] != PADDLE_INT8 else [])
    timed = {r["key"] for r in rows if r.get("timing")}
    series: dict[str, Any] = {}
    for key in keys:
        if key not in dirs or key not in timed:
            continue
        v = BY_KEY[key]
        runs = {}
        for threads in THREADS:
            runs[threads] = open_engine_row(
                v.engine, dirs[key], v.precision, plan.seq_len, 64, threads, v.options
            ).run
        series[v.label] = measure_scaling(runs, arrays)
    plot = plot_scaling(
        series, out / PLOT_FILE, f"pruned 6L-768H INT8, seq {plan.seq_len}, {cpu_model()}"
    )
    return {"fastest": fastest["key"], "series": series, "plot": str(plot)}


def _int8_repro(out: Path) -> dict[str, Any]:
    """The INT8 attention-matmul reproduction (:mod:`benchmarks.int8_attention_repro`)."""
    from benchmarks.int8_attention_repro import reproduce

    with tempfile.TemporaryDirectory(prefix="int8-repro-") as tmp:
        cases = reproduce(Path(tmp))
    return {"cases": cases}


def _trt_rows(seeds, int8_dir, batches, plan, threads, work) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """TensorRT rows (GPU mode): FP32 and FP16 for every seed shape, INT8 for the PTQ model."""
    from benchmarks.cpu_rows import row_meta
    from benchmarks.rows import open_trt_row, time_rows

    work.mkdir(parents=True, exist_ok=True)
    opened = []
    for key in ("bert_base", "6l", "6l_pruned"):
        for precision in ("fp32", "fp16"):
            meta = row_meta(
                f"trt_{key}_{precision}",
                seeds[key],
                f"TensorRT {precision.upper()}",
                baseline=key == "bert_base" and precision == "fp32",
            )
            opened.append(
                open_trt_row(
                    meta, seeds[key].inference_dir, precision, batches, plan, threads, work
                )
            )
    meta = row_meta("trt_6l_pruned_int8", seeds["6l_pruned"], "TensorRT INT8")
    opened.append(open_trt_row(meta, int8_dir, "int8", batches, plan, threads, work))
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
    atomic_write_json(out / BENCH_JSON, result)
    atomic_write_text(out / BENCH_MD, text)
    if result["profiles"] or result.get("ort_int8_op_times"):
        atomic_write_text(out / PROFILE_TXT, render_profile(result))
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
