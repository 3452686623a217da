"""Why a goal was missed, in numbers: profile breakdowns turned into short notes (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_COMPUTE = ("inner_product", "matmul")
#: ORT kernels doing INT8 GEMMs (DynamicQuantizeMatMul also quantizes its input on the fly).
_ORT_INT8_GEMMS = (
    "MatMulInteger",
    "QLinearMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
)


def paddle_breakdown(prof: Mapping[str, Any]) -> dict[str, float]:
    """Milliseconds of one oneDNN-verbose batch by category.

    Categories: ``int8_compute`` (inner product/matmul with s8/u8 source), ``fp32_compute``
    (the same ops in FP32: attention matmuls, FP32 FCs), ``reorder`` (quantize/dequantize and
    layout changes), ``other_onednn`` (softmax, layer norm, binary, eltwise) and
    ``outside_onednn`` (Paddle's own ops and framework time), plus ``wall``.
    """
    out = dict.fromkeys(("int8_compute", "fp32_compute", "reorder", "other_onednn"), 0.0)
    for key, rec in prof["primitives"].items():
        kind, dtype = key.split(" ", 2)[:2]
        if kind in _COMPUTE:
            cat = "int8_compute" if dtype in ("s8", "u8") else "fp32_compute"
        elif kind == "reorder":
            cat = "reorder"
        else:
            cat = "other_onednn"
        out[cat] += rec["ms"]
    out["outside_onednn"] = max(prof["other_ms"], 0.0)
    out["wall"] = prof["wall_ms"]
    return {k: round(v, 1) for k, v in out.items()}


def ort_breakdown(op_times: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Milliseconds per batch of an ORT INT8 profile by category (kernel time only)."""
    out = {"int8_matmul": 0.0, "dynamic_quantize": 0.0, "fp32_matmul": 0.0, "other": 0.0}
    for op, rec in op_times.items():
        if op in (
            "MatMulInteger",
            "QLinearMatMul",
            "MatMulIntegerToFloat",
            "DynamicQuantizeMatMul",
        ):
            out["int8_matmul"] += rec["ms"]
        elif op == "DynamicQuantizeLinear":
            out["dynamic_quantize"] += rec["ms"]
        elif op in ("MatMul", "Gemm", "FusedMatMul"):
            out["fp32_matmul"] += rec["ms"]
        else:
            out["other"] += rec["ms"]
    out["kernels_total"] = sum(out.values())
    return {k: round(v, 1) for k, v in out.items()}


def _fmt(parts: Mapping[str, float], total: float) -> str:
    return ", ".join(f"{k} {v:.0f} ms ({v / total:.0%})" for k, v in parts.items() if v > 0)


def gap_notes(
    goals: Sequence[Mapping[str, Any]],
    paddle_int8: Mapping[str, Any] | None,
    paddle_fp32: Mapping[str, Any] | None,
    ort_int8_ops: Mapping[str, Mapping[str, float]] | None,
    accuracies: Mapping[str, float | None],
) -> list[str]:
    """One note per missed goal, saying by how much and where the time/accuracy went.

    Args:
        goals: :func:`benchmarks.table.evaluate_goals` output.
        paddle_int8: oneDNN profile of the pruned INT8 model (or None if not profiled).
        paddle_fp32: oneDNN profile of the pruned FP32 model (or None).
        ort_int8_ops: ORT per-op times of the INT8 model (or None).
        accuracies: ``fp32_6l``, ``fp32_pruned``, ``int8_pruned`` dev accuracies (0..1).
    """
    notes: list[str] = []
    p8 = paddle_breakdown(paddle_int8) if paddle_int8 else None
    p32 = paddle_breakdown(paddle_fp32) if paddle_fp32 else None
    for goal in goals:
        if goal["met"] is not False:
            continue
        text = f"{goal['goal']}: {goal['gap']}."
        if goal["goal"].startswith("pruned+INT8") and p8:
            parts = {k: v for k, v in p8.items() if k != "wall"}
            text += (
                f" Profiled INT8 batch ({p8['wall']:.0f} ms): {_fmt(parts, p8['wall'])}."
                " INT8 op set: FC layers and attention matmuls (with the mask-add fuse pass"
                " deleted, see the INT8 attention section); FP32 compute left = what oneDNN"
                " keeps FP32 around them."
            )
            if p32:
                text += (
                    f" Pruned FP32 batch for comparison: {p32['wall']:.0f} ms, of which "
                    f"{p32['fp32_compute']:.0f} ms FP32 inner product/matmul."
                )
        elif goal["goal"].startswith("Paddle INT8") and p8:
            parts = {k: v for k, v in p8.items() if k != "wall"}
            text += f" Paddle INT8 batch (oneDNN verbose): {_fmt(parts, p8['wall'])}."
            if goal.get("peer_int8"):
                text += f" {goal.get('peer_engine', 'The peer')} runs: {goal['peer_int8']}."
            if goal.get("peer", "").startswith("ort") and ort_int8_ops:
                o8 = ort_breakdown(ort_int8_ops)
                oparts = {k: v for k, v in o8.items() if k != "kernels_total"}
                text += (
                    f" ORT dynamic INT8 batch (kernel time {o8['kernels_total']:.0f} ms): "
                    f"{_fmt(oparts, o8['kernels_total'] or 1.0)}."
                )
        elif goal["goal"].startswith("accuracy drop"):
            a6, ap, a8 = (accuracies.get(k) for k in ("fp32_6l", "fp32_pruned", "int8_pruned"))
            if a6 is not None and ap is not None and a8 is not None:
                text += (
                    f" Pruning to width 0.75 moved dev accuracy {(ap - a6) * 100:+.2f} points, "
                    f"INT8 PTQ {(a8 - ap) * 100:+.2f} points (local 6L-64H student, short"
                    " fine-tune/prune budgets of the bench; 1 point = 1% of the dev set)."
                )
        notes.append(text)
    return notes
