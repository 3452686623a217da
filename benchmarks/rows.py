"""Measure one bench row: Paddle Inference (CPU oneDNN / GPU TensorRT) or onnxruntime.

Every Paddle row goes through the project's :class:`ppminilm.inference.benchmark.Predictor` with an
:class:`ppminilm.config.InferConfig`; the INT8 evidence is the project's own
:func:`ppminilm.inference.predictor.inspect_optimized_program` on the program the predictor
optimized.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import Batch, RunFn, TimingPlan, accuracy_pass, time_models
from ppminilm.config import InferConfig
from ppminilm.inference.benchmark import collect_shape_ranges
from ppminilm.inference.predictor import OPTIMIZED_PROGRAM, Predictor, inspect_optimized_program

logger = logging.getLogger(__name__)


def infer_config(
    precision: str, seq_len: int, batch_size: int, num_threads: int, device: str = "cpu"
) -> InferConfig:
    """The InferConfig of a row (CPU: oneDNN, project INT8 op set; GPU: TensorRT)."""
    return InferConfig(
        device=device,
        precision=precision,
        batch_size=batch_size,
        max_seq_len=seq_len,
        num_threads=num_threads,
        use_trt=device == "gpu",
    )


def int8_note(check: Mapping[str, Any] | None, precision: str) -> str:
    """Table text for the INT8-kernel evidence of a Paddle row."""
    if precision != "int8":
        return f"- ({precision})"
    if not check or not check.get("checked"):
        return "unchecked: " + str((check or {}).get("reason", "no check"))
    if not check.get("runs_int8"):
        return (
            f"NO: FP32 fallback ({check.get('fake_quant_ops', 0)} fake-quant ops left, "
            f"{check.get('int8_ops', 0)} INT8 compute ops)"
        )
    types = ", ".join(f"{t} x{n}" for t, n in check.get("int8_op_types", {}).items())
    return f"yes: {types} INT8; {check['quant_dequant_ops']} quant/dequant; 0 fake-quant"


def open_paddle(
    meta: Mapping[str, Any],
    model_dir: str | Path,
    precision: str,
    batches: Sequence[Batch],
    plan: TimingPlan,
    num_threads: int,
    device: str = "cpu",
    work_dir: str | Path | None = None,
) -> tuple[RunFn, dict[str, Any]]:
    """Build the Predictor of one Paddle row and check its INT8 kernels.

    Args:
        meta: Row fields (``key``, ``model``, ``engine``, ``params``, ``flops``...).
        model_dir: Inference dir.
        precision: ``fp32``/``fp16``/``int8``.
        batches: Full dev batches (TensorRT shape collection uses the first and last).
        plan: Timing schedule (batch size, sequence length).
        num_threads: CPU math threads.
        device: ``cpu`` (oneDNN) or ``gpu`` (TensorRT with tuned dynamic shape).
        work_dir: Where the TensorRT shape-range file goes (GPU).

    Returns:
        ``(run, row)``: the predictor's ``run`` and ``meta`` plus ``device``, ``precision``,
        ``model_dir``, ``config``, ``int8_check`` and ``int8_note`` (no ``timing`` yet).
    """
    cfg = infer_config(precision, plan.seq_len, plan.batch_size, num_threads, device)
    if device == "gpu":
        shape_file = Path(work_dir or tempfile.mkdtemp()) / f"{meta['key']}.pbtxt"
        collect_shape_ranges(model_dir, cfg, shape_file, [batches[0], batches[-1]])
        predictor = Predictor(model_dir, cfg, shape_file=str(shape_file))
        check: dict[str, Any] = {"checked": False, "reason": "TensorRT engine (opaque)"}
        note = f"TensorRT {precision}"
    else:
        with tempfile.TemporaryDirectory(prefix="bench-optim-") as tmp:
            predictor = Predictor(model_dir, cfg, optim_dir=tmp)
            check = inspect_optimized_program(Path(tmp) / OPTIMIZED_PROGRAM, predictor.quantized)
        note = int8_note(check, precision)
    row = {
        **meta,
        "device": device,
        "precision": precision,
        "model_dir": str(model_dir),
        "config": cfg.to_dict(),
        "int8_check": check,
        "int8_note": note,
    }
    return predictor.run, row


def open_ort(
    meta: Mapping[str, Any],
    onnx_path: str | Path,
    num_threads: int,
    int8: Mapping[str, Any] | None = None,
) -> tuple[RunFn, dict[str, Any]]:
    """Build the onnxruntime session of one row.

    Args:
        meta: Row fields.
        onnx_path: The ONNX model.
        num_threads: ``intra_op_num_threads``.
        int8: For the INT8 row: ``quantize`` (graph counts) and ``profile`` (kernels run).

    Returns:
        ``(run, row)`` as :func:`open_paddle`.
    """
    from benchmarks.onnx_bench import OrtRunner

    runner = OrtRunner(onnx_path, num_threads)
    note = "- (fp32)"
    if int8:
        graph = int8["quantize"]["int8_nodes"]
        ran = int8["profile"]["int8_kernels_run"]
        kernels = " + ".join(f"{op} x{n}" for op, n in ran.items()) or "none"
        note = (
            f"{'yes' if ran else 'NO'}: MatMulInteger x{graph.get('MatMulInteger', 0)} in graph; "
            f"INT8 kernels run per batch (ORT profile): {kernels}; "
            f"{int8['quantize']['matmul_fp32']} MatMul left FP32"
        )
    row = {
        **meta,
        "device": "cpu",
        "precision": "int8" if int8 else "fp32",
        "model_dir": str(onnx_path),
        "config": {"onnxruntime": runner.version, "intra_op_num_threads": num_threads},
        "int8_check": dict(int8) if int8 else None,
        "int8_note": note,
    }
    return runner.run, row


def time_rows(
    opened: Sequence[tuple[RunFn, dict[str, Any]]], batches: Sequence[Batch], plan: TimingPlan
) -> list[dict[str, Any]]:
    """Time opened rows together (interleaved, :func:`benchmarks.timing.time_models`)."""
    runs = {row["key"]: run for run, row in opened}
    logger.info("timing %d rows interleaved: %s", len(runs), ", ".join(runs))
    timings = time_models(runs, batches, plan)
    rows = []
    for _, row in opened:
        row["timing"] = timings[row["key"]]
        logger.info(
            "%s %s: %.1f ms/batch (median of %d passes), %.1f ex/s",
            row["model"],
            row["engine"],
            row["timing"]["batch_ms"],
            plan.repeats,
            row["timing"]["throughput"],
        )
        rows.append(row)
    return rows


def paddle_row(
    meta: Mapping[str, Any],
    model_dir: str | Path,
    precision: str,
    batches: Sequence[Batch],
    plan: TimingPlan,
    num_threads: int,
) -> dict[str, Any]:
    """One CPU Paddle row, opened and timed on its own."""
    return time_rows(
        [open_paddle(meta, model_dir, precision, batches, plan, num_threads)], batches, plan
    )[0]


def ort_row(
    meta: Mapping[str, Any],
    onnx_path: str | Path,
    batches: Sequence[Batch],
    plan: TimingPlan,
    num_threads: int,
    int8: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One onnxruntime row, opened and timed on its own."""
    return time_rows([open_ort(meta, onnx_path, num_threads, int8)], batches, plan)[0]


def paddle_accuracy(
    model_dir: str | Path,
    precision: str,
    arrays: Mapping[str, np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    num_threads: int,
) -> dict[str, Any]:
    """Dev accuracy (one pass, every example) of a Paddle inference dir on CPU."""
    seq = int(arrays["input_ids"].shape[1])
    predictor = Predictor(model_dir, infer_config(precision, seq, batch_size, num_threads))
    result = accuracy_pass(predictor.run, arrays, labels, batch_size)
    result.update(engine=f"Paddle {precision.upper()}", model_dir=str(model_dir))
    return result


def ort_accuracy(
    onnx_path: str | Path,
    arrays: Mapping[str, np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    num_threads: int,
    engine: str,
) -> dict[str, Any]:
    """Dev accuracy (one pass, every example) of an ONNX model under onnxruntime."""
    from benchmarks.onnx_bench import OrtRunner

    runner = OrtRunner(onnx_path, num_threads)
    result = accuracy_pass(runner.run, arrays, labels, batch_size)
    result.update(engine=engine, model_dir=str(onnx_path))
    return result
