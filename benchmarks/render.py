"""bench.json -> bench.md and profile.txt (pure text rendering)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.onednn_profile import format_profile
from benchmarks.pipeline_timing import stage_table
from benchmarks.table import goals_markdown, markdown_table


def accuracy_table(acc: Mapping[str, Mapping[str, Any]], trained: Mapping[str, Any]) -> str:
    """The trained local models' dev accuracy, drop vs FP32 6L and their own batch time."""
    base = acc.get("fp32_6l", {}).get("accuracy")
    names = {
        "fp32_6l": "6L FP32 (fine-tuned)",
        "fp32_pruned": "6L pruned 0.75 FP32",
        "int8_pruned": "6L pruned 0.75 INT8 (Paddle PTQ)",
        "ort_fp32_pruned": "6L pruned 0.75, onnxruntime FP32",
        "ort_int8_pruned": "6L pruned 0.75, onnxruntime INT8 (dynamic)",
    }
    lines = [
        "| trained model † | engine | dev acc % | vs FP32 6L (points) | ms/batch (one pass) |",
        "|---|---|---:|---:|---:|",
    ]
    for key, name in names.items():
        if key not in acc:
            continue
        a = acc[key]["accuracy"]
        drop = "" if base is None else f"{(a - base) * 100:+.2f}"
        lines.append(
            f"| {name} | {acc[key]['engine']} | {a * 100:.2f} | {drop} | "
            f"{acc[key]['batch_ms']:.1f} |"
        )
    arch = trained.get("arch", {})
    lines.append("")
    lines.append(
        f"† Local profile student {arch.get('num_layers')}L-{arch.get('hidden_size')}H "
        f"(vocab {arch.get('vocab_size')}), init: {trained.get('init')}; fine-tuned "
        f"{trained.get('finetune_steps')} steps (dev {trained.get('finetune_dev_acc', 0):.4f}), "
        f"pruned (dev {trained.get('prune_dev_acc', 0):.4f}), PTQ {trained.get('quantize_best')}; "
        f"seq {trained.get('seq_len')}, every dev example once."
    )
    return "\n".join(lines)


def render_markdown(result: Mapping[str, Any]) -> str:
    """The whole bench report (what is printed and written to bench.md)."""
    rows = result["rows"]
    parts = [
        "# PP-MiniLM bench",
        "",
        f"Timing: {result['plan_text']}. Threads: {result['threads']}. "
        f"Load average at start {result['loadavg_start']}, end {result['loadavg_end']}.",
        "",
        "Speed columns: seed shapes with **random weights** (" + result["vocab"] + "), local "
        "review dev set. Accuracy column (†): the **trained local models** below, same "
        "precision/engine and pruning, full dev set.",
        "",
        markdown_table(rows),
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
        ("paddle_int8", "Paddle INT8 (oneDNN, fc INT8)"),
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
