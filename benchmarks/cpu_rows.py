"""The CPU rows of the bench: which models on which engines, opened, timed and scored.

Batch 32 x 128 rows: BERT-base 12L-768H FP32 and PP-MiniLM 6L-768H FP32 on Paddle (the
speed-up baselines), then every :data:`benchmarks.variants.VARIANTS` entry of the pruned 6L-768H
(Paddle FP32/BF16/INT8, OpenVINO FP32/BF16/INT8 NNCF/INT8 ours, onnxruntime FP32/INT8 dynamic/
INT8 static), all timed in one interleaved schedule. The same opened engines then give the
batch-1 rows (p50/p99 of single examples, interleaved too).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.rows import open_row, row_accuracy, time_rows
from benchmarks.timing import Batch, TimingPlan, single_examples, time_latency
from benchmarks.variants import BY_KEY, VARIANTS
from ppminilm.errors import is_expected
from ppminilm.inference.engines import Engine

logger = logging.getLogger(__name__)

#: Baseline rows: key -> (seed model key, precision).
BASELINES = {"paddle_bert_base_fp32": "bert_base", "paddle_6l_fp32": "6l"}


def row_meta(key: str, seed: Any, engine_label: str, **extra: Any) -> dict[str, Any]:
    """The fixed fields of a row (model label, params, FLOPs of its seed shape)."""
    return {
        "key": key,
        "model": seed.label,
        "engine": engine_label,
        "params": seed.params,
        "flops": seed.flops,
        **extra,
    }


def open_cpu_rows(
    seeds: Mapping[str, Any],
    dirs: Mapping[str, Path],
    errors: Mapping[str, str],
    batches: Sequence[Batch],
    plan: TimingPlan,
    threads: int,
) -> tuple[list[tuple[Engine, dict[str, Any]]], list[dict[str, Any]]]:
    """Open every CPU row; a row that cannot open becomes a ``not run`` row with the reason.

    Returns:
        ``(opened, missing)``.
    """
    opened: list[tuple[Engine, dict[str, Any]]] = []
    missing: list[dict[str, Any]] = []
    for key, seed_key in BASELINES.items():
        meta = row_meta(
            key, seeds[seed_key], "Paddle FP32 (oneDNN)", baseline=seed_key == "bert_base"
        )
        opened.append(
            open_row(meta, "paddle", seeds[seed_key].inference_dir, "fp32", batches, plan, threads)
        )
    for v in VARIANTS:
        meta = row_meta(v.key, seeds["6l_pruned"], v.label)
        if v.key not in dirs:
            missing.append(
                {
                    **meta,
                    "device": "cpu",
                    "precision": v.precision,
                    "error": errors.get(v.key, "not built"),
                }
            )
            continue
        try:
            opened.append(
                open_row(
                    meta, v.engine, dirs[v.key], v.precision, batches, plan, threads, v.options
                )
            )
        except Exception as exc:
            if not is_expected(exc):
                raise
            logger.error("row %s not run: %s", v.key, exc)
            missing.append({**meta, "device": "cpu", "precision": v.precision, "error": str(exc)})
    return opened, missing


def time_cpu_rows(
    opened: Sequence[tuple[Engine, dict[str, Any]]],
    batches: Sequence[Batch],
    plan: TimingPlan,
    latency_arrays: Mapping[str, np.ndarray],
    latency_samples: int,
    latency_warmup: int,
) -> list[dict[str, Any]]:
    """Batch rows (interleaved), then batch-1 latency of the same engines (interleaved).

    Returns:
        The rows, each with ``timing`` and ``latency_bs1``.
    """
    rows = time_rows(opened, batches, plan)
    examples = single_examples(latency_arrays, latency_warmup + latency_samples)
    lat = time_latency({row["key"]: eng.run for eng, row in opened}, examples, latency_warmup)
    for row in rows:
        row["latency_bs1"] = lat[row["key"]]
    return rows


def trained_accuracy(
    trained: Mapping[str, Any],
    dirs: Mapping[str, Path],
    errors: Mapping[str, str],
    arrays: Mapping[str, np.ndarray],
    labels: np.ndarray,
    batch_size: int,
    threads: int,
) -> dict[str, dict[str, Any]]:
    """Dev accuracy of the trained models: FP32 6L on Paddle, then every variant of the
    trained pruned model (same engines and conversions as the speed rows).

    Returns:
        Key (``fp32_6l`` or a variant key) -> ``accuracy``, ``examples``, ``batch_ms``... or
        ``error`` when that variant could not be built or run.
    """
    acc: dict[str, dict[str, Any]] = {
        "fp32_6l": row_accuracy(
            "paddle", trained["fp32_6l"], "fp32", arrays, labels, batch_size, threads
        )
    }
    for v in VARIANTS:
        if v.key not in dirs:
            acc[v.key] = {"error": errors.get(v.key, "not built")}
            continue
        try:
            acc[v.key] = row_accuracy(
                v.engine, dirs[v.key], v.precision, arrays, labels, batch_size, threads, v.options
            )
        except Exception as exc:
            if not is_expected(exc):
                raise
            acc[v.key] = {"error": str(exc)}
    return acc


def attach_accuracy(
    rows: Sequence[dict[str, Any]], acc: Mapping[str, Mapping[str, Any]], mark: str
) -> None:
    """Put each row's trained-model accuracy on it (baselines: FP32 6L or n/a)."""
    source = {"paddle_6l_fp32": "fp32_6l", **{k: k for k in BY_KEY}}
    for row in rows:
        name = source.get(row["key"]) if row["device"] == "cpu" else None
        if name and "accuracy" in acc.get(name, {}):
            row.update(accuracy=acc[name]["accuracy"], accuracy_mark=mark, accuracy_from=name)
        else:
            row["accuracy_note"] = (
                "n/a (random weights)"
                if row["key"].startswith(("paddle_bert", "trt_bert"))
                else "n/a"
            )


def fastest_int8(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The fastest timed CPU INT8 row (batch 32)."""
    int8 = [
        r for r in rows if r.get("precision") == "int8" and r.get("timing") and r["device"] == "cpu"
    ]
    return min(int8, key=lambda r: r["timing"]["batch_ms"]) if int8 else None
