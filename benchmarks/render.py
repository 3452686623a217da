"""bench.json -> bench.md and profile.txt (pure text rendering)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.onednn_profile import format_profile
from benchmarks.pipeline_timing import stage_table
from benchmarks.scaling import PLOT_FILE, scaling_table
from benchmarks.table import goals_markdown, markdown_table
from benchmarks.variants import VARIANTS


def accuracy_table(acc: Mapping[str, Mapping[str, Any]], trained: Mapping[str, Any]) -> str:
    """The trained local models' dev accuracy, drop vs FP32 6L and their own batch time."""
    base = acc.get("fp32_6l", {}).get("accuracy")
    names = {"fp32_6l": ("6L FP32 (fine-tuned)", "Paddle FP32 (oneDNN)")}
    names.update({v.key: ("6L pruned 0.75", v.label) for v in VARIANTS})
    lines = [
        "| trained model † | engine / precision | dev acc % | vs FP32 6L (points) | "
        "ms/batch (one pass) |",
        "|---|---|---:|---:|---:|",
    ]
    for key, (name, engine) in names.items():
        rec = acc.get(key)
        if not rec:
            continue
        if "accuracy" not in rec:
            lines.append(f"| {name} | {engine} | not run: {rec.get('error', '?')} | | |")
            continue
        a = rec["accuracy"]
        drop = "" if base is None else f"{(a - base) * 100:+.2f}"
        lines.append(f"| {name} | {engine} | {a * 100:.2f} | {drop} | {rec['batch_ms']:.1f} |")
    arch = trained.get("arch", {})
    lines.append("")
    lines.append(
        f"† Local profile student {arch.get('num_layers')}L-{arch.get('hidden_size')}H "
        f"(vocab {arch.get('vocab_size')}), init: {trained.get('init')}; fine-tuned "
        f"{trained.get('finetune_steps')} steps (dev {trained.get('finetune_dev_acc', 0):.4f}), "
        f"pruned (dev {trained.get('prune_dev_acc', 0):.4f}), PTQ {trained.get('quantize_best')} "
        f"({trained.get('calib_examples')} calib examples; NNCF and ORT static use the same); "
        f"seq {trained.get('seq_len')}, every dev example once."
    )
    return "\n".join(lines)


def latency_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Batch-1 rows: p50/p99 latency and single-stream throughput per engine."""
    lines = [
        "| model | engine / precision | p50 ms | p99 ms | mean ms | ex/s (one stream) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lat = row.get("latency_bs1")
        if not lat:
            continue
        lines.append(
            f"| {row['model']} | {row['engine']} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | "
            f"{lat['mean_ms']:.1f} | {lat['throughput']:.1f} |"
        )
    return "\n".join(lines)


def repro_table(cases: Sequence[Mapping[str, Any]]) -> str:
    """The INT8 fused_matmul reproduction cases."""
    lines = [
        "| case | mask | INT8 ops | max error vs FP32 (of range) | run-to-run spread | result |",
        "|---|---|---|---:|---:|---|",
    ]
    for c in cases:
        lines.append(
            f"| {c['case']} | {c['mask_shape']} | {', '.join(c['int8_ops']) or 'none'} | "
            f"{c['max_rel_error_vs_fp32']:.4f} | {c['run_to_run_rel_spread']:.4f} | "
            f"{'correct' if c['correct'] else 'WRONG'} |"
        )
    return "\n".join(lines)


def render_markdown(result: Mapping[str, Any]) -> str:
    """The whole bench report (what is printed and written to bench.md)."""
    rows = result["rows"]
    cpu = result.get("cpu", {})
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu.get("isa", {}).items())
    lat = result.get("latency_plan", {})
    parts = [
        "# PP-MiniLM bench",
        "",
        f"CPU: {cpu.get('model', '?')}, {cpu.get('cores', '?')} cores; ISA: {isa}. "
        f"Threads per engine: {result['threads']}. "
        f"Load average (1/5/15 min) at start {result['loadavg_start']}, end "
        f"{result['loadavg_end']}.",
        "",
        f"Timing: {result['plan_text']}; spread = (slowest - fastest pass) / median. Batch 1: "
        f"{lat.get('warmup', '?')} warm-up then {lat.get('samples', '?')} single examples per "
        "engine, engines interleaved example by example.",
        "",
        "Speed columns: seed shapes with **random weights** (" + result["vocab"] + "), local "
        "review dev set. Accuracy column (†): the **trained local models** below, put through "
        "the same engine, precision and conversions, full dev set.",
        "",
        markdown_table(rows),
        "",
    ]
    fastest = next((r for r in rows if r["key"] == result.get("fastest_int8")), None)
    if fastest:
        parts += [
            f"Fastest INT8 on this CPU (batch 32 x 128): **{fastest['engine']}**, "
            f"{fastest['timing']['batch_ms']:.0f} ms/batch.",
            "",
        ]
    parts += [
        "## Batch 1 (online latency)",
        "",
        latency_table(rows),
        "",
        "## Goals",
        "",
        goals_markdown(result["goals"]),
        "",
    ]
    if result["notes"]:
        parts += ["Why:", ""] + [f"- {n}" for n in result["notes"]] + [""]
    parts += [
        "## Accuracy (trained local models)",
        "",
        accuracy_table(result["accuracy"], result["trained"]),
        "",
    ]
    scaling = result.get("scaling") or {}
    if scaling.get("series"):
        parts += [
            "## Scaling (fastest INT8 engine, and Paddle INT8)",
            "",
            scaling_table(scaling["series"]),
            "",
            f"![throughput vs batch size and threads]({PLOT_FILE})",
            "",
        ]
    repro = result.get("int8_attention_repro") or {}
    if repro.get("cases"):
        parts += ["## Paddle INT8 attention matmul (`benchmarks/int8_attention_repro.py`)", ""]
        parts += [repro_table(repro["cases"]), ""]
    pipeline = result.get("pipeline")
    parts += ["## `make run` timing", ""]
    if pipeline:
        when = pipeline.get("recorded_at", "?")
        reused = (
            " (recorded by an earlier `--pipeline` run, not this one)"
            if pipeline.get("reused_from_earlier_run")
            else ""
        )
        parts += [
            f"Recorded {when}{reused}; peak RSS of the largest process "
            f"{pipeline['peak_rss_mib']:.0f} MiB.",
            "",
            stage_table(pipeline),
            "",
        ]
    else:
        parts += [
            "Not measured in this run (`python -m benchmarks.run --pipeline` or "
            "`--pipeline-only`).",
            "",
        ]
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result["stage_seconds"].items())
    rss = result["peak_rss_mib"]
    parts += [
        "## This bench",
        "",
        f"{result['seconds']:.0f} s in all ({stages}); peak RSS of the bench process "
        f"{rss:.0f} MiB.",
        "",
    ]
    return "\n".join(parts)


def render_profile(result: Mapping[str, Any]) -> str:
    """profile.txt: oneDNN op-time tables (Paddle) and ORT kernel times, plus the notes."""
    lines = ["Profiles of one batch (batch 32 x seq 128), pruned 6L-768H seed shape.", ""]
    for key, title in (
        ("paddle_fp32", "Paddle FP32 (oneDNN)"),
        ("paddle_int8", "Paddle INT8 (oneDNN)"),
    ):
        prof = result["profiles"].get(key)
        if prof:
            lines += [format_profile(title, prof), ""]
    ops = result.get("ort_int8_op_times")
    if ops:
        total = sum(rec["ms"] for rec in ops.values())
        lines.append(
            f"onnxruntime INT8 (dynamic): kernel time {total:.1f} ms/batch (mean of profiled runs)"
        )
        lines.append(f"  {'op type':<30} {'count':>7} {'ms':>8} {'share':>6}")
        for op, rec in list(ops.items())[:12]:
            share = rec["ms"] / (total or 1)
            lines.append(f"  {op:<30} {rec['count']:>7.0f} {rec['ms']:>8.1f} {share:>6.1%}")
        lines.append("")
    if result["notes"]:
        lines += ["Notes:"] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"
