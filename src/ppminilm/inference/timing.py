"""The timing protocol: rows timed interleaved, each until a time budget (autorange).

A "row" is one model's whole dev pass (a callable). After ``warmup_passes`` untimed passes of
every row, each of ``rounds`` rounds times every row once, in an order that rotates from round
to round; within a round a row runs whole passes until at least ``min_time_s`` have gone by,
and its time per pass is the elapsed time over the passes. Machine load that changes during
the run hits every row of a round alike, so per-round ratios (speed-ups) are steadier than the
raw times. A row's speed-up is the trimmed mean of its per-round ratios (the lowest and the
highest round dropped once there are five or more rounds): on a 2-core VM one pass of the tiny
local models varies by 10-15 % from round to round, and over repeated runs the trimmed mean
moved less than the median of the same rounds did. The report gives the speed-up, the median
seconds per pass and the spread (lowest to highest round's ratio).

The timing step may run on fewer math threads than the benchmarks (``TimingConfig.threads``;
the local profile times on one): on 2 cores a second math thread shares its core with the
orchestrator and any other process, and the per-round spread of 2-thread rounds was twice
that of 1-thread rounds.

:func:`build_speed_baseline` makes the 1.00x row: a classifier of the baseline architecture
(BERT-base on the cluster, the teacher's shape locally) with random weights, exported like
the real models: its speed is what a model of that shape costs; its accuracy means nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ppminilm.config import ModelArch, TimingConfig
from ppminilm.contracts import TimedRow

PassFn = Callable[[], object]


def time_interleaved(
    runs: Mapping[str, PassFn], protocol: TimingConfig
) -> dict[str, tuple[list[float], list[int]]]:
    """Time every row with the protocol (see the module docstring).

    Args:
        runs: Row name -> one whole dev pass.
        protocol: Warm-up passes, rounds, budget per row and round.

    Returns:
        Row name -> (seconds per pass in each round, passes in each round), in ``runs`` order.
    """
    names = list(runs)
    for name in names:
        for _ in range(protocol.warmup_passes):
            runs[name]()
    out: dict[str, tuple[list[float], list[int]]] = {n: ([], []) for n in names}
    for r in range(protocol.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            passes, start = 0, time.perf_counter()
            while True:
                runs[name]()
                passes += 1
                elapsed = time.perf_counter() - start
                if elapsed >= protocol.min_time_s:
                    break
            out[name][0].append(elapsed / passes)
            out[name][1].append(passes)
    return out


def timed_rows(
    raw: Mapping[str, tuple[list[float], list[int]]],
    baseline: str,
    details: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, TimedRow]:
    """Each row's median time and its speed-up over ``baseline`` from same-round ratios.

    Args:
        raw: :func:`time_interleaved`'s output.
        baseline: The row every speed-up is relative to.
        details: Per row ``precision`` / ``arch`` to record beside the timings.
    """
    base = raw[baseline][0]
    out = {}
    for name, (seconds, passes) in raw.items():
        ratios = [b / s for b, s in zip(base, seconds, strict=True) if s > 0]
        out[name] = TimedRow(
            seconds_per_pass=tuple(seconds),
            passes=tuple(passes),
            median_s=float(statistics.median(seconds)),
            speedup=trimmed_mean(ratios),
            speedup_low=min(ratios),
            speedup_high=max(ratios),
            **dict((details or {}).get(name, {})),  # type: ignore[arg-type]
        )
    return out


#: Rounds from which :func:`trimmed_mean` drops the lowest and the highest value.
TRIM_FROM_ROUNDS = 5


def trimmed_mean(values: Sequence[float]) -> float:
    """Mean of ``values`` without the lowest and the highest (kept whole under 5 values).

    Raises:
        ValueError: If ``values`` is empty.
    """
    if not values:
        raise ValueError("trimmed_mean of no values")
    kept = sorted(values)[1:-1] if len(values) >= TRIM_FROM_ROUNDS else list(values)
    return float(sum(kept) / len(kept))


def build_speed_baseline(
    arch: ModelArch,
    labels: list[str],
    max_seq_len: int,
    tokenizer_dir: str | Path,
    out_dir: str | Path,
) -> Path:
    """Export a randomly initialised classifier of ``arch`` (the speed baseline row).

    Args:
        arch: The baseline shape; its ``vocab_size`` should be the real models' (the same
            token ids are fed to every row).
        labels: The task's labels (the head's size).
        max_seq_len: Serving length, as the real models'.
        tokenizer_dir: Tokenizer files to copy along.
        out_dir: Inference model directory to write.
    """
    from ppminilm.compat.paddle import set_seed
    from ppminilm.modeling.ernie import build_model
    from ppminilm.modeling.export import export_static
    from ppminilm.modeling.saved import ModelInfo

    set_seed(0)
    info = ModelInfo(arch=arch, kind="classifier", task="", labels=list(labels))
    model = build_model(arch, "classifier", num_classes=len(labels))
    export_static(
        model,
        info,
        out_dir,
        max_seq_len=max_seq_len,
        tokenizer_dir=tokenizer_dir,
        provenance={"stage": "speed-baseline", "parent": "random initialisation"},
    )
    return Path(out_dir)
