"""Open, time and score bench rows on any engine (:mod:`ppminilm.inference.engines`).

A row is one model on one engine at one precision. Paddle rows go through the project's
:class:`ppminilm.inference.engines.paddle.PaddleEngine` (the pipeline's predictor, INT8 checked in
the optimized program); OpenVINO and onnxruntime rows through their engines (INT8 checked in
OpenVINO's runtime graph and in an onnxruntime profile of one batch).
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
from ppminilm.inference.engines import Engine, engine_class

logger = logging.getLogger(__name__)


def infer_config(
    precision: str,
    seq_len: int,
    batch_size: int,
    num_threads: int,
    device: str = "cpu",
    engine: str = "paddle",
) -> InferConfig:
    """The InferConfig of a row (CPU: oneDNN, project INT8 op set; GPU: TensorRT)."""
    return InferConfig(
        device=device,
        precision=precision,
        batch_size=batch_size,
        max_seq_len=seq_len,
        num_threads=num_threads,
        use_trt=device == "gpu",
        engine=engine,
    )


def open_engine_row(
    engine: str,
    model_dir: str | Path,
    precision: str,
    seq_len: int,
    batch_size: int,
    num_threads: int,
    options: Mapping[str, Any] | None = None,
) -> Engine:
    """Open one CPU row's engine."""
    cfg = infer_config(precision, seq_len, batch_size, num_threads, engine=engine)
    return engine_class(engine)(model_dir, cfg, **dict(options or {}))


def open_row(
    meta: Mapping[str, Any],
    engine: str,
    model_dir: str | Path,
    precision: str,
    batches: Sequence[Batch],
    plan: TimingPlan,
    num_threads: int,
    options: Mapping[str, Any] | None = None,
) -> tuple[Engine, dict[str, Any]]:
    """Open a CPU row and check its INT8 kernels.

    Args:
        meta: Row fields (``key``, ``model``, ``engine``, ``params``, ``flops``...).
        engine: Engine name.
        model_dir: The row's inference dir.
        precision: ``fp32``/``bf16``/``int8``.
        batches: Dev batches (the first is the INT8-check sample).
        plan: Timing schedule (batch size, sequence length).
        num_threads: CPU threads.
        options: Extra engine arguments.

    Returns:
        ``(engine, row)``: the row is ``meta`` plus ``device``, ``precision``, ``model_dir``,
        ``config``, ``int8_check`` and ``int8_note`` (no ``timing`` yet).
    """
    runner = open_engine_row(
        engine, model_dir, precision, plan.seq_len, plan.batch_size, num_threads, options
    )
    check = runner.int8_check(batches[0])
    row = {
        **meta,
        "device": "cpu",
        "precision": precision,
        "engine_name": engine,
        "model_dir": str(model_dir),
        "config": runner.describe(),
        "int8_check": {k: v for k, v in check.items() if k != "op_times"},
        "int8_note": check.get("summary", ""),
    }
    if "op_times" in check:
        row["op_times"] = check["op_times"]
    return runner, row


def open_trt_row(
    meta: Mapping[str, Any],
    model_dir: str | Path,
    precision: str,
    batches: Sequence[Batch],
    plan: TimingPlan,
    num_threads: int,
    work_dir: str | Path | None = None,
) -> tuple[Engine, dict[str, Any]]:
    """Open a GPU TensorRT row (shape ranges collected on the first and last batch first)."""
    from ppminilm.inference.benchmark import collect_shape_ranges
    from ppminilm.inference.engines.paddle import PaddleEngine

    cfg = infer_config(precision, plan.seq_len, plan.batch_size, num_threads, "gpu")
    shape_file = Path(work_dir or tempfile.mkdtemp()) / f"{meta['key']}.pbtxt"
    collect_shape_ranges(model_dir, cfg, shape_file, [batches[0], batches[-1]])
    runner = PaddleEngine(model_dir, cfg, shape_file=str(shape_file))
    check = runner.int8_check()
    row = {
        **meta,
        "device": "gpu",
        "precision": precision,
        "engine_name": "paddle",
        "model_dir": str(model_dir),
        "config": runner.describe(),
        "int8_check": check,
        "int8_note": check["summary"],
    }
    return runner, row


def time_rows(
    opened: Sequence[tuple[Engine, dict[str, Any]]], batches: Sequence[Batch], plan: TimingPlan
) -> list[dict[str, Any]]:
    """Time opened rows together (interleaved, :func:`benchmarks.timing.time_models`)."""
    runs: dict[str, RunFn] = {row["key"]: runner.run for runner, row in opened}
    logger.info("timing %d rows interleaved: %s", len(runs), ", ".join(runs))
    timings = time_models(runs, batches, plan)
    rows = []
    for _, row in opened:
        row["timing"] = timings[row["key"]]
        logger.info(
            "%s %s: %.1f ms/batch (median of %d passes, spread %.0f%%), %.1f ex/s",
            row["model"],
            row["engine"],
            row["timing"]["batch_ms"],
            plan.repeats,
            row["timing"]["spread_pct"],
            row["timing"]["throughput"],
        )
        rows.append(row)
    return rows


def row_accuracy(
    engine: str,
    model_dir: str | Path,
    precision: str,
    arrays: Mapping[str, np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    num_threads: int,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Dev accuracy (one pass, every example) of an inference dir on one CPU engine."""
    seq = int(arrays["input_ids"].shape[1])
    runner = open_engine_row(engine, model_dir, precision, seq, batch_size, num_threads, options)
    result = accuracy_pass(runner.run, arrays, labels, batch_size)
    result.update(engine=engine, precision=precision, model_dir=str(model_dir))
    return result
