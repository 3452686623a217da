"""Stage 6, the accuracy-budgeted compression search: keep the fastest model within budget.

The candidates of a task are the fine-tuned FP32 model (the reference) and, for every width
the one OFA supernet was trained for, the FP32 sub-model and its INT8 version. Each has a dev
accuracy (the benchmark) and a speed measured with every other candidate in one interleaved
timing (:mod:`ppminilm.inference.timing`: seconds per dev pass in each round, every candidate
timed once per round). The rule (:data:`RULE`):

1. A candidate is *within budget* when its dev accuracy is at most ``budget`` points below the
   reference's (the reference itself always is).
2. Among those, the fastest (lowest median) and every candidate *tied* with it: their speed
   difference is within the measured spread. The comparison is paired, round by round: in a
   round both ran back to back, so a load change on the machine slows both alike, and the
   ratio of their times in that round is what the round measured. They tie when the median
   of those ratios is within 1 ± half their range (the report's "2.41x ±3%" is the same
   spread), so one noisy round cannot turn a clear difference into a tie. Without per-round
   times the unpaired rule applies: medians no further apart than half the larger of the two
   round-to-round ranges.
3. Ties go to the higher dev accuracy, then to the smaller model: fewer parameters, then fewer
   bits per weight (INT8 before FP32), then the lower median.
4. If no compressed candidate is within budget, the reference is kept and the reason names
   the closest one and how far below it is.

Selection only ever sees dev; a labelled test split's accuracy rides along for the report.
Pure Python on the contracts: no paddle, so the rule is tested on constructed candidates.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence

from ppminilm.config import ModelArch
from ppminilm.contracts import (
    BenchmarkResult,
    ContractError,
    SearchCandidate,
    SearchSelection,
    TimingResult,
    candidate_key,
)
from ppminilm.modeling.accounting import count_flops, count_params

logger = logging.getLogger(__name__)

#: Accuracy drops are compared after rounding away float noise (0.778 - 0.768 is 1.0000000009
#: points): a drop within this many points of the budget counts as within it.
BUDGET_TOLERANCE_POINTS = 1e-6

#: Float noise allowed when a ratio's distance from 1 equals its half range exactly.
RATIO_TOLERANCE = 1e-9

#: Bits per weight of each precision (the size tie-break after the parameter count).
PRECISION_BITS = {"fp32": 32, "fp16": 16, "bf16": 16, "int8": 8}

#: The rule, as the report states it.
RULE = (
    "fastest candidate (median seconds per dev pass) whose dev accuracy is at most the budget "
    "below the fine-tuned FP32 model's; a candidate ties with the fastest when their speed "
    "difference is within the measured spread: the median of their per-round time ratios "
    "(both timed in the same round) is within 1 ± half the ratios' range; ties are broken by "
    "higher dev accuracy, then "
    "the smaller model (fewer parameters, then fewer bits per weight); if no compressed "
    "candidate is within budget, the FP32 model is kept"
)


def size_key(c: SearchCandidate) -> tuple[int, int]:
    """A candidate's size for the tie-break: parameters, then bits per weight."""
    return c.params, PRECISION_BITS.get(c.precision, 32)


def drop_points(reference_acc: float, acc: float) -> float:
    """Points of accuracy ``acc`` is below ``reference_acc`` (negative: above), both fractions."""
    return round((reference_acc - acc) * 100.0, 9)


def is_tie(a: SearchCandidate, b: SearchCandidate) -> bool:
    """Whether two candidates' speed difference is within their measured spread.

    Paired when both have the same number of timing rounds: the median of the per-round
    ratios of their times is within 1 ± half the ratios' range. Otherwise: medians no further
    apart than half the larger of the two round-to-round ranges.
    """
    if a.round_seconds and len(a.round_seconds) == len(b.round_seconds):
        ratios = [x / y for x, y in zip(a.round_seconds, b.round_seconds, strict=True) if y > 0]
        if ratios:
            half_range = (max(ratios) - min(ratios)) / 2
            return abs(statistics.median(ratios) - 1.0) <= half_range + RATIO_TOLERANCE
    return abs(a.seconds_per_pass - b.seconds_per_pass) <= max(a.spread_s, b.spread_s) / 2


def select(
    candidates: Sequence[SearchCandidate],
    reference: str,
    budget_points: float,
    *,
    task: str = "",
    report_split: str = "",
) -> SearchSelection:
    """Apply the rule (module docstring) to a task's candidates.

    Args:
        candidates: Every candidate, the reference among them (``drop_points`` and the flags
            are recomputed here).
        reference: Key of the fine-tuned FP32 model.
        budget_points: Accepted dev accuracy drop, in points (0: no drop at all).
        task: Task name, for the record.
        report_split: A split reported but never used to select (``test``), if any.

    Returns:
        The selection: every candidate marked (within budget, tied, chosen), and the reason.

    Raises:
        ContractError: If keys repeat or the reference is not among the candidates.
    """
    keys = [c.key for c in candidates]
    if len(set(keys)) != len(keys):
        raise ContractError(f"search candidates of {task!r} repeat a key: {keys}")
    if reference not in keys:
        raise ContractError(f"search of {task!r}: reference {reference!r} not among {keys}")
    ref_acc = candidates[keys.index(reference)].dev_acc
    marked = []
    for c in candidates:
        drop = drop_points(ref_acc, c.dev_acc)
        marked.append(
            c.replace(
                drop_points=drop,
                within_budget=c.key == reference or drop <= budget_points + BUDGET_TOLERANCE_POINTS,
                tied_fastest=False,
                chosen=False,
            )
        )
    eligible = [c for c in marked if c.within_budget]
    fastest = min(eligible, key=lambda c: (c.seconds_per_pass, c.key))
    tied = [c for c in eligible if is_tie(c, fastest)]
    chosen = min(tied, key=lambda c: (-c.dev_acc, size_key(c), c.seconds_per_pass, c.key))
    tied_keys = {c.key for c in tied}
    final = [c.replace(tied_fastest=c.key in tied_keys, chosen=c.key == chosen.key) for c in marked]
    compressed = [c for c in final if c.key != reference]
    fallback = bool(compressed) and not any(c.within_budget for c in compressed)
    ref = next(c for c in final if c.key == reference)
    reason = _reason(chosen, fastest, tied, ref, compressed, budget_points, fallback)
    logger.info("search %s: %s", task, reason)
    return SearchSelection(
        task=task,
        budget_points=budget_points,
        reference=reference,
        reference_dev_acc=ref_acc,
        chosen=chosen.key,
        reason=reason,
        candidates=tuple(final),
        fallback=fallback,
        report_split=report_split,
        rule=RULE,
    )


def _speed(c: SearchCandidate) -> str:
    return f"{c.seconds_per_pass:.3g} s per dev pass"


def _drop(c: SearchCandidate) -> str:
    if c.drop_points > 0:
        return f"{c.drop_points:.2f} points below FP32"
    if c.drop_points < 0:
        return f"{-c.drop_points:.2f} points above FP32"
    return "as accurate as FP32"


def _reason(
    chosen: SearchCandidate,
    fastest: SearchCandidate,
    tied: Sequence[SearchCandidate],
    ref: SearchCandidate,
    compressed: Sequence[SearchCandidate],
    budget: float,
    fallback: bool,
) -> str:
    within = f"within {budget:g} points of the fine-tuned FP32 model ({ref.dev_acc * 100:.2f}%)"
    if fallback:
        closest = min(compressed, key=lambda c: (c.drop_points, c.key))
        return (
            f"No compressed candidate is {within}: the closest, {closest.key}, is "
            f"{closest.drop_points:.2f} points below. Kept the FP32 model {ref.key}."
        )
    if not compressed:
        return f"Only the FP32 model {ref.key} was measured; kept it."
    others = [c for c in tied if c.key != chosen.key]
    if chosen.key == ref.key:
        if fastest.key == ref.key and not others:
            return (
                f"No candidate {within} is faster than the FP32 model ({_speed(ref)}); "
                f"kept {ref.key}."
            )
        names = ", ".join(c.key for c in others)
        return (
            f"The candidates {within} ({names}) are no faster than the FP32 model beyond the "
            f"measured spread; kept {ref.key}, the most accurate."
        )
    if chosen.key == fastest.key:
        text = f"{chosen.key}: the fastest candidate {within}: {_speed(chosen)}, {_drop(chosen)}."
    else:
        text = (
            f"{chosen.key}: {_speed(chosen)}, {_drop(chosen)}; as fast, within the measured "
            f"spread, as the fastest candidate {within}, {fastest.key} ({_speed(fastest)})."
        )
    if others:
        names = ", ".join(c.key for c in others)
        text += f" Tied on speed with {names} (within the measured spread); preferred to "
        text += "; to ".join(_preferred(chosen, others)) + "."
    return text


def _preferred(chosen: SearchCandidate, others: Sequence[SearchCandidate]) -> list[str]:
    """Why the chosen one won each tie: accuracy, then size, then the median time."""
    by_acc = [c.key for c in others if c.dev_acc < chosen.dev_acc]
    same = [c for c in others if c.dev_acc == chosen.dev_acc]
    fewer_params = [c.key for c in same if chosen.params < c.params]
    fewer_bits = [
        c.key for c in same if chosen.params == c.params and size_key(chosen) < size_key(c)
    ]
    by_time = [c.key for c in same if size_key(chosen) == size_key(c)]
    parts = []
    if by_acc:
        parts.append(f"{', '.join(by_acc)} for higher dev accuracy")
    if fewer_params:
        parts.append(f"{', '.join(fewer_params)} at the same accuracy: fewer parameters")
    if fewer_bits:
        parts.append(
            f"{', '.join(fewer_bits)} at the same accuracy and parameters: fewer bits per weight"
        )
    if by_time:
        parts.append(f"{', '.join(by_time)} at the same accuracy and size: the lower median time")
    return parts


def candidates_from(rows: Sequence[BenchmarkResult], timing: TimingResult) -> list[SearchCandidate]:
    """A task's candidates from its benchmark rows (accuracy) and its timing (speed).

    Args:
        rows: One benchmark result per candidate (``name`` may be anything: the key comes
            from the row's architecture and precision, :func:`candidate_key`).
        timing: The interleaved timing of the same models, keyed by candidate key.

    Returns:
        Unmarked candidates (``drop_points`` 0; :func:`select` fills it in).

    Raises:
        ContractError: If a row has no timing, or two rows are the same candidate.
    """
    out: list[SearchCandidate] = []
    for row in rows:
        key = candidate_key(row.arch, row.precision)
        if key not in timing.rows:
            raise ContractError(
                f"timing of {timing.task!r} has no row {key!r}; rows: {sorted(timing.rows)}"
            )
        t = timing.rows[key]
        arch = ModelArch.from_dict(dict(row.arch)) if row.arch else None
        params = row.params if row.params is not None else (count_params(arch) if arch else 1)
        # FLOPs at the length the rows ran at (the report's FLOPs column does the same).
        flops = count_flops(arch, row.max_seq_len) if arch else (row.flops or 1)
        out.append(
            SearchCandidate(
                key=key,
                width=float(row.arch.get("width", 1.0)),
                num_layers=int(row.arch.get("num_layers", 0)),
                precision=row.precision,
                engine=row.engine,
                dev_acc=row.accuracy,
                drop_points=0.0,
                params=params,
                flops=flops,
                seconds_per_pass=t.median_s,
                fastest_s=min(t.seconds_per_pass),
                slowest_s=max(t.seconds_per_pass),
                round_seconds=tuple(t.seconds_per_pass),
                speedup=t.speedup,
                test_acc=row.test_accuracy,
            )
        )
    keys = [c.key for c in out]
    if len(set(keys)) != len(keys):
        raise ContractError(f"benchmark rows of {timing.task!r} repeat a candidate: {keys}")
    return out


__all__ = [
    "BUDGET_TOLERANCE_POINTS",
    "RULE",
    "candidates_from",
    "drop_points",
    "is_tie",
    "select",
    "size_key",
]
