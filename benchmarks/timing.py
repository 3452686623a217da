"""The bench's timing schedule and accuracy pass, shared by every engine (Paddle, OpenVINO, ORT).

Why not :func:`ppminilm.inference.run_benchmark` as is: it re-runs the warm-up batches and the
whole dev split on every repetition. BERT-base shape FP32 takes ~5 s per batch of 32 x 128 on
two cores, so 5 passes over the 31 dev batches (plus 5 x 20 warm-up) would take ~17 min for
that row alone. The bench therefore warms up once per model on ``warmup_batches`` dev batches,
then times ``repeats`` passes over a fixed slice of ``timed_batches`` further dev batches (the
same slice for every row) and reports the median pass. The model is always driven through the
project's engines (:mod:`ppminilm.inference.engines`). Ten warm-up batches by default, not the
seed's 20: with 13 rows the other ten would add ~2 minutes on 2 cores, and every engine here is
at its steady speed from the second or third batch on (oneDNN primitive creation, OpenVINO's
first inference).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]
RunFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]

#: Inputs every model takes (export.py's INPUT_NAMES order).
INPUT_KEYS = ("input_ids", "token_type_ids")


@dataclass(frozen=True)
class TimingPlan:
    """What is timed: the seed's batch 32 and seq 128, 10 warm-up batches, 5 repetitions."""

    batch_size: int = 32
    seq_len: int = 128
    warmup_batches: int = 10
    repeats: int = 5
    timed_batches: int = 2

    def __post_init__(self) -> None:
        for name in ("batch_size", "seq_len", "repeats", "timed_batches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TimingPlan.{name} must be > 0, got {getattr(self, name)}")
        if self.warmup_batches < 0:
            raise ValueError(f"TimingPlan.warmup_batches must be >= 0, got {self.warmup_batches}")

    @property
    def batches_needed(self) -> int:
        """Full dev batches the plan uses (warm-up slice, then the timed slice)."""
        return self.warmup_batches + self.timed_batches

    def describe(self) -> str:
        """One line saying exactly what was timed."""
        return (
            f"batch {self.batch_size} x seq {self.seq_len} (padded); {self.warmup_batches} "
            f"warm-up batches once per model (dev batches 0-{self.warmup_batches - 1}), then "
            f"{self.repeats} rounds of one timed pass per model, models interleaved, over the "
            f"same {self.timed_batches} dev batches ({self.warmup_batches}-"
            f"{self.batches_needed - 1}); latency = median pass / {self.timed_batches}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def split_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> list[Batch]:
    """Full batches (the last partial batch dropped) of the model inputs, in order.

    Raises:
        ValueError: If there is not even one full batch.
    """
    n = len(arrays["input_ids"]) // batch_size
    if n == 0:
        raise ValueError(f"{len(arrays['input_ids'])} examples hold no full batch of {batch_size}")
    return [
        {
            k: np.ascontiguousarray(arrays[k][i * batch_size : (i + 1) * batch_size])
            for k in INPUT_KEYS
        }
        for i in range(n)
    ]


def plan_slices(batches: Sequence[Batch], plan: TimingPlan) -> tuple[list[Batch], list[Batch]]:
    """The warm-up and timed slices of ``batches`` for ``plan``.

    Raises:
        ValueError: If the split has fewer full batches than the plan needs.
    """
    if len(batches) < plan.batches_needed:
        raise ValueError(
            f"the dev split has {len(batches)} full batches of {plan.batch_size}; the timing "
            f"plan needs {plan.batches_needed} ({plan.warmup_batches} warm-up + "
            f"{plan.timed_batches} timed): lower --warmup/--timed-batches or build more dev data"
        )
    return list(batches[: plan.warmup_batches]), list(
        batches[plan.warmup_batches : plan.batches_needed]
    )


def summarize_passes(
    pass_seconds: Sequence[float],
    latencies_s: Sequence[float],
    batches_per_pass: int,
    batch_size: int,
) -> dict[str, Any]:
    """Median pass time, per-batch latency (median pass / batches) and throughput.

    Args:
        pass_seconds: Wall seconds of each timed pass.
        latencies_s: Every timed batch's seconds (all passes).
        batches_per_pass: Timed batches per pass.
        batch_size: Examples per batch.

    Returns:
        ``pass_s`` (all), ``median_pass_s``, ``spread_pct`` ((slowest - fastest pass) / median,
        in percent), ``batch_ms`` (median pass / batches), ``latency_ms``
        (``p50``/``p95``/``mean`` over every timed batch), ``throughput`` (examples per second
        at the median pass).
    """
    if not pass_seconds or not latencies_s:
        raise ValueError("no timed passes to summarize")
    median = statistics.median(pass_seconds)
    lat_ms = np.asarray(latencies_s) * 1e3
    return {
        "pass_s": [round(s, 4) for s in pass_seconds],
        "median_pass_s": round(median, 4),
        "spread_pct": round((max(pass_seconds) - min(pass_seconds)) / median * 100, 1),
        "batch_ms": round(median / batches_per_pass * 1e3, 2),
        "latency_ms": {
            "p50": round(float(np.percentile(lat_ms, 50)), 2),
            "p95": round(float(np.percentile(lat_ms, 95)), 2),
            "mean": round(float(lat_ms.mean()), 2),
        },
        "throughput": round(batches_per_pass * batch_size / median, 2),
    }


def time_models(
    runs: Mapping[str, RunFn], batches: Sequence[Batch], plan: TimingPlan
) -> dict[str, dict[str, Any]]:
    """Warm every model up, then time ``plan.repeats`` rounds of one pass per model.

    The passes are interleaved (round 1: model A, B, C...; round 2: A, B, C...) so that a
    change in machine load (other jobs on a shared box) hits every row alike instead of
    whichever row happened to run at that moment; the median over rounds then compares
    like with like.

    Args:
        runs: Row key -> logits for one batch (a Predictor's ``run`` or an ORT wrapper).
        batches: Full dev batches (see :func:`split_batches`).
        plan: The schedule.

    Returns:
        Row key -> :func:`summarize_passes`' dict plus ``warmup_s``.
    """
    warmup, timed = plan_slices(batches, plan)
    warmup_s: dict[str, float] = {}
    for key, run in runs.items():
        t0 = time.perf_counter()
        for batch in warmup:
            run(batch)
        warmup_s[key] = time.perf_counter() - t0
    passes: dict[str, list[float]] = {key: [] for key in runs}
    latencies: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(plan.repeats):
        for key, run in runs.items():
            start = time.perf_counter()
            for batch in timed:
                t1 = time.perf_counter()
                run(batch)
                latencies[key].append(time.perf_counter() - t1)
            passes[key].append(time.perf_counter() - start)
    out: dict[str, dict[str, Any]] = {}
    for key in runs:
        out[key] = summarize_passes(passes[key], latencies[key], len(timed), plan.batch_size)
        out[key]["warmup_s"] = round(warmup_s[key], 2)
    return out


def time_model(run: RunFn, batches: Sequence[Batch], plan: TimingPlan) -> dict[str, Any]:
    """:func:`time_models` for a single model."""
    return time_models({"model": run}, batches, plan)["model"]


def accuracy_pass(
    run: RunFn, arrays: Mapping[str, np.ndarray], labels: np.ndarray, batch_size: int
) -> dict[str, Any]:
    """Score every example once (the last batch may be partial) and time the pass.

    Returns:
        ``accuracy``, ``examples``, ``pass_s`` (one untimed-warm-up pass, end to end),
        ``batch_ms`` (pass seconds / batches).
    """
    n = len(labels)
    preds: list[np.ndarray] = []
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        batch = {k: np.ascontiguousarray(arrays[k][start : start + batch_size]) for k in INPUT_KEYS}
        preds.append(np.asarray(run(batch)).argmax(-1))
    seconds = time.perf_counter() - t0
    pred = np.concatenate(preds)
    return {
        "accuracy": round(float((pred == labels).mean()), 4),
        "examples": n,
        "pass_s": round(seconds, 3),
        "batch_ms": round(seconds / len(preds) * 1e3, 2),
    }


def time_latency(
    runs: Mapping[str, RunFn], examples: Sequence[Batch], warmup: int
) -> dict[str, dict[str, Any]]:
    """Batch-1 (online) latency: every model runs each example alone, models interleaved.

    Args:
        runs: Row key -> logits for one batch.
        examples: Single-example batches (``[1, seq]`` each); the first ``warmup`` are not
            timed.
        warmup: Untimed examples per model.

    Returns:
        Row key -> ``samples``, ``p50_ms``, ``p99_ms``, ``mean_ms``, ``throughput`` (examples/s
        at the mean).
    """
    if len(examples) <= warmup:
        raise ValueError(f"{len(examples)} examples leave none to time after {warmup} warm-up")
    for run in runs.values():
        for ex in examples[:warmup]:
            run(ex)
    lat: dict[str, list[float]] = {key: [] for key in runs}
    for ex in examples[warmup:]:
        for key, run in runs.items():
            t0 = time.perf_counter()
            run(ex)
            lat[key].append(time.perf_counter() - t0)
    out = {}
    for key, values in lat.items():
        ms = np.asarray(values) * 1e3
        out[key] = {
            "samples": len(values),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2),
            "throughput": round(1e3 / float(ms.mean()), 1),
        }
    return out


def single_examples(arrays: Mapping[str, np.ndarray], count: int, start: int = 0) -> list[Batch]:
    """``count`` one-example batches from ``arrays`` (from row ``start``, cycling if short)."""
    n = len(arrays["input_ids"])
    rows = [(start + i) % n for i in range(count)]
    return [{k: np.ascontiguousarray(arrays[k][r : r + 1]) for k in INPUT_KEYS} for r in rows]
