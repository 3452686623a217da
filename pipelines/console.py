"""What a person sees during ``make run``: stage headers with an ETA, quiet KFP, a timing table.

KFP's local runner logs every task's full ``executor_input`` JSON and its output artifacts;
:func:`quiet_kfp` drops those (``--verbose`` keeps them): in the components' interpreters
through a ``sitecustomize`` module put on their ``PYTHONPATH``, in this process through a
filter on the root logger. :class:`StageClock` turns KFP's "Executing task" / "finished"
records into ``[stage 4/9] fine-tune grid`` headers with the elapsed time and an ETA, and
prints a per-stage timing table at the end.

The ETA comes from the profile's step counts: each stage's reference time (measured on two
cores with the local profile) is scaled by how much more work the resolved configs ask for,
then by how fast this machine ran the stages already finished.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ppminilm.progress import format_seconds

#: The stages of a run, in order: (task name prefix(es), display name).
STAGES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("check-search", "build-data"), "build data"),
    (("pretrain-teacher",), "teacher"),
    (("distill",), "general distillation"),
    (("finetune",), "fine-tune grid"),
    (("select-best",), "select best grid point"),
    (("prune",), "OFA width pruning"),
    (("take-width", "quantize"), "INT8 quantization"),
    (("benchmark", "time-rows"), "benchmark + timing"),
    (("select-candidate", "serve", "report"), "search + report"),
)
#: Seconds each stage took on 2 cores with the local profile: two quiet `make run`s into fresh
#: OUT dirs (2026-12-02, AMD EPYC VM, 8 min 27 s and 8 min 14 s), per stage the mean. Stage
#: spans overlap where the DAG runs steps side by side; stage 8 spans from the first benchmark
#: to the timing step's end.
REFERENCE_SECONDS = (8.0, 64.0, 48.0, 177.0, 7.0, 76.0, 32.0, 117.0, 4.0)
#: Reference seconds of finished work before the ETA scales by the observed pace.
MIN_PACE_SECONDS = 30.0
#: The observed pace is clamped to this range (a stage can be slow for reasons that pass).
PACE_LIMITS = (0.5, 3.0)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TASK = re.compile(r"task '([^']+)'|task ([A-Za-z0-9_-]+)", re.IGNORECASE)
_QUIET_DIR = Path(__file__).resolve().parent / "_quiet"


#: Lines the components print that say nothing to a person: Paddle's oneDNN INT8 pass
#: statistics (printed by C++, one line per op kind, ~35 per INT8 predictor) and KFP's
#: separators around each task's stream.
_NOISE_LINES = re.compile(r"^\s*(---\s+(quantized|squashed) \d+ |$)")


class _LineFilter:
    """A stdout stand-in that drops :data:`_NOISE_LINES` and passes everything else on."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if _NOISE_LINES.match(_ANSI.sub("", line)):
                continue
            # KFP indents a task's lines with a separate write, which concurrent tasks (the
            # grid points) interleave: indent task lines here, once.
            if line.lstrip().startswith("[KFP Executor"):
                line = "    " + line.lstrip()
            self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def quiet_kfp(verbose: bool) -> Iterator[None]:
    """While active, keep KFP's per-task JSON dumps, artifact listings and Paddle's pass
    statistics out of the log (unless verbose)."""
    warnings.filterwarnings("ignore", message=r"Task .* have no effect in the current local")
    if verbose:
        yield
        return
    os.environ["PPMINILM_KFP_QUIET"] = "1"
    paths = [str(_QUIET_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    logging.getLogger().addFilter(_drop_outer_noise)
    original = sys.stdout
    sys.stdout = _LineFilter(original)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout = original
        logging.getLogger().removeFilter(_drop_outer_noise)


def _drop_outer_noise(record: logging.LogRecord) -> bool:
    message = _ANSI.sub("", record.getMessage())
    noisy = (
        message.startswith(
            (
                "Streamed logs",
                "Skipping conditional task",
                "Cleaned up workspace",
                "Applying expression selector",
                "After expression selector",
            )
        )
        or " outputs:" in message
        or " has no outputs" in message
    )
    return not noisy


def _stage_of(task_name: str) -> int | None:
    base = re.sub(r"(-\d+)+$", "", task_name)
    for i, (prefixes, _) in enumerate(STAGES):
        if base in prefixes:
            return i
    return None


def work_scale(
    profile: str, overrides: Mapping[str, Any], grid_points: int, widths: int = 0
) -> list[float]:
    """Each stage's work relative to the reference run (1.0 = the local profile as shipped).

    ``widths``: how many widths the search compares (0: the profile's).
    """
    from ppminilm.config import (
        DataConfig,
        DistillConfig,
        FinetuneConfig,
        PruneConfig,
        QuantConfig,
        TeacherConfig,
        config_for,
        split_overrides,
    )

    over = split_overrides(overrides)

    def cfg(cls: Any, reference: bool = False) -> Any:
        # the reference is the local profile as shipped: no overrides
        if reference:
            return config_for(cls, "local")
        return config_for(cls, profile, over.get(cls.stage))

    def ratio(now: float, ref: float) -> float:
        return now / ref if ref else 1.0

    data, data_ref = cfg(DataConfig), cfg(DataConfig, reference=True)
    teacher, teacher_ref = cfg(TeacherConfig), cfg(TeacherConfig, reference=True)
    dist, dist_ref = cfg(DistillConfig), cfg(DistillConfig, reference=True)
    ft, ft_ref = cfg(FinetuneConfig), cfg(FinetuneConfig, reference=True)
    pr, pr_ref = cfg(PruneConfig), cfg(PruneConfig, reference=True)
    qt, qt_ref = cfg(QuantConfig), cfg(QuantConfig, reference=True)

    def steps(c: Any) -> float:
        return c.max_steps * c.batch_size * c.max_seq_len

    def epochs(c: Any, d: DataConfig) -> float:
        return (
            c.max_steps * c.batch_size if c.max_steps else c.epochs * d.reviews_train
        ) * c.max_seq_len

    def pruning(c: Any, d: DataConfig, n: int) -> float:
        # one forward/backward per width per step (one supernet for all widths)
        # batch size None: the selected grid point's, not known before the run
        examples = (
            c.max_steps * (c.batch_size or 32) if c.max_steps else c.num_epochs * d.reviews_train
        )
        return max(examples, 1) * c.max_seq_len * n

    n_widths = widths or len(pr.width_mult_list)
    n_ref = len(pr_ref.width_mult_list)

    return [
        ratio(data.reviews_train + data.pairs_train, data_ref.reviews_train + data_ref.pairs_train),
        ratio(steps(teacher), steps(teacher_ref)) if not teacher.pretrained else 0.1,
        ratio(steps(dist), steps(dist_ref)),
        ratio(epochs(ft, data) * grid_points, epochs(ft_ref, data_ref) * 4),
        1.0,
        ratio(pruning(pr, data, n_widths), pruning(pr_ref, data_ref, n_ref)),
        ratio(
            len(qt.algos) * len(qt.batch_sizes) * len(qt.batch_nums) * n_widths,
            len(qt_ref.algos) * len(qt_ref.batch_sizes) * len(qt_ref.batch_nums) * n_ref,
        ),
        ratio(2 * n_widths + 1, 2 * n_ref + 1),
        1.0,
    ]


@dataclass
class StageClock:
    """Stage headers with elapsed time and ETA, and the per-stage timing table."""

    scale: list[float]
    out: Any = sys.stdout
    started: float = field(default_factory=time.monotonic)
    first_start: dict[int, float] = field(default_factory=dict)
    last_end: dict[int, float] = field(default_factory=dict)

    def install(self) -> None:
        """Watch the root logger's records (KFP's orchestrator logs through it)."""
        logging.getLogger().addFilter(self._observe)

    def predicted(self, stage: int) -> float:
        """Predicted seconds of a stage (reference x work x this machine's observed pace)."""
        return REFERENCE_SECONDS[stage] * self.scale[stage] * self.pace()

    def pace(self) -> float:
        """Actual / reference seconds over the stages finished so far (1.0 before any).

        1.0 until :data:`MIN_PACE_SECONDS` of reference work is done, and clamped to
        :data:`PACE_LIMITS`: one slow 7-second data step (a noisy neighbour made it 41 s once)
        must not predict a 54-minute run.
        """
        done = [i for i in self.last_end if i in self.first_start and i not in self._running()]
        actual = sum(self.last_end[i] - self.first_start[i] for i in done)
        expected = sum(REFERENCE_SECONDS[i] * self.scale[i] for i in done)
        if actual <= 0 or expected < MIN_PACE_SECONDS:
            return 1.0
        low, high = PACE_LIMITS
        return min(max(actual / expected, low), high)

    def _running(self) -> set[int]:
        return {i for i in self.first_start if i == max(self.first_start)}

    def _observe(self, record: logging.LogRecord) -> bool:
        message = _ANSI.sub("", record.getMessage())
        match = _TASK.search(message)
        if not match:
            return True
        stage = _stage_of(match.group(1) or match.group(2))
        if stage is None:
            return True
        now = time.monotonic()
        if message.startswith("Executing task"):
            if stage not in self.first_start:
                self.first_start[stage] = now
                self._header(stage, now)
        elif "finished with status" in message or "cache hit" in message:
            self.last_end[stage] = now
        return True

    def remaining(self, now: float) -> float:
        """Predicted seconds left: stages not started, and what running ones have left.

        Stages can start out of order (a model's benchmark starts as soon as that model
        exists), so every stage not yet seen counts, wherever it sits in the list.
        """
        left = 0.0
        for i in range(len(STAGES)):
            if i not in self.first_start:
                left += self.predicted(i)
            elif i not in self.last_end or self.last_end[i] < self.first_start[i]:
                left += max(0.0, self.predicted(i) - (now - self.first_start[i]))
        return left

    def _header(self, stage: int, now: float) -> None:
        remaining = self.remaining(now)
        self.out.write(
            f"\n[stage {stage + 1}/{len(STAGES)}] {STAGES[stage][1]} | elapsed "
            f"{format_seconds(now - self.started)} | ETA {format_seconds(remaining)}\n"
        )
        self.out.flush()

    def table(self) -> str:
        """The per-stage timing table (Markdown), in stage order."""
        lines = ["| stage | seconds | predicted |", "|---|---:|---:|"]
        for i, (_, name) in enumerate(STAGES):
            if i in self.first_start:
                took = self.last_end.get(i, time.monotonic()) - self.first_start[i]
                ref = REFERENCE_SECONDS[i] * self.scale[i]
                lines.append(f"| {i + 1}. {name} | {took:.0f} | {ref:.0f} |")
        total = time.monotonic() - self.started
        lines.append(f"| total | {total:.0f} | {sum(REFERENCE_SECONDS):.0f} |")
        return "\n".join(lines)
