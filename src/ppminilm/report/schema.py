"""The run summary the report is built from: typed records, checked on the way in.

``RunSummary.from_dict`` (through :func:`validate_summary`) refuses a malformed summary with a
:class:`ReportError` naming the field (``RunSummary.models[2].accuracy['tnews']``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from ppminilm.config.base import Record
from ppminilm.contracts import SearchSelection
from ppminilm.errors import ConfigError, UserError


class ReportError(UserError):
    """The run summary is malformed (the message names the field)."""


@dataclasses.dataclass
class Speed(Record):
    """A row's time per dev pass and its speed-up over the baseline row, with the spread."""

    seconds_per_pass: float
    speedup: float
    low: float
    high: float


@dataclasses.dataclass
class ModelRow(Record):
    """One row of the summary table."""

    key: str
    name: str
    params: int
    flops: int
    #: Dev accuracy per task (fractions); a task left out was not measured for this row.
    accuracy: dict[str, float]
    precision: str = "fp32"
    arch: dict[str, Any] = dataclasses.field(default_factory=dict)
    speed: Speed | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput: float | None = None
    #: oneDNN/TensorRT INT8 kernels seen in the optimized program; None when not checked.
    int8_kernels: bool | None = None
    #: Accuracy on a labelled test split no selection saw (tasks that have one).
    test_accuracy: dict[str, float] = dataclasses.field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"ModelRow({self.name!r})"
        if self.params <= 0 or self.flops <= 0:
            raise ConfigError(f"{where}: params and flops must be > 0")
        for field in ("accuracy", "test_accuracy"):
            for task, acc in getattr(self, field).items():
                if not 0.0 <= acc <= 1.0:
                    raise ConfigError(f"{where}.{field}[{task!r}]={acc}: expected a fraction")


@dataclasses.dataclass
class GridCell(Record):
    """One grid point's best dev accuracy."""

    batch_size: int
    learning_rate: float
    dev_acc: float


@dataclasses.dataclass
class QuantRow(Record):
    """One PTQ candidate's dev accuracy."""

    task: str
    algo: str
    batch_num: int
    acc: float
    selected: bool = False
    #: Calibration batch size (0: not recorded, a run before batch sizes were searched).
    batch_size: int = 0
    #: Width of the pruned model the candidate quantized (the search has one PTQ per width).
    width: float = 1.0

    @property
    def label(self) -> str:
        """``mse bs4 x1``: algo, calibration batch size and batch count."""
        size = f" bs{self.batch_size}" if self.batch_size else ""
        return f"{self.algo}{size} x{self.batch_num}"


@dataclasses.dataclass
class LossPoint(Record):
    """One point of the distillation loss curve."""

    step: int
    loss: float


@dataclasses.dataclass
class RunSummary(Record):
    """Everything the report shows; the first model row is the speed baseline."""

    models: Sequence[ModelRow]
    tasks: Sequence[str] = ()
    title: str = "PP-MiniLM compression report"
    profile: str = ""
    #: Tokens per example the rows ran at; FLOPs are counted at this length.
    seq_len: int = 128
    batch_size: int = 0
    split: str = "dev"
    #: How the speed column was timed (one sentence).
    timing: str = ""
    #: Majority-class dev accuracy per task (the floor to beat).
    majority: dict[str, float] = dataclasses.field(default_factory=dict)
    #: The teacher's pre-training quality (empty when it was imported).
    teacher: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, Sequence[GridCell]] = dataclasses.field(default_factory=dict)
    quantization: Sequence[QuantRow] = ()
    distill_loss: Sequence[LossPoint] = ()
    #: The compression search's choice per task (issue 21), with every candidate weighed.
    search: dict[str, SearchSelection] = dataclasses.field(default_factory=dict)
    environment: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.models:
            raise ConfigError(
                "RunSummary.models is empty; expected >= 1 model row (the first is the speed "
                "baseline)"
            )
        if not self.tasks:
            seen: list[str] = []
            for row in self.models:
                seen += [t for t in row.accuracy if t not in seen]
            self.tasks = tuple(seen)


def validate_summary(summary: Mapping[str, Any] | RunSummary, where: str = "") -> RunSummary:
    """Check a run summary (a mapping, e.g. read from JSON) and return it typed.

    Raises:
        ReportError: Naming the first malformed field.
    """
    if isinstance(summary, RunSummary):
        return summary
    try:
        return RunSummary.from_dict(summary, where=where)
    except ConfigError as exc:
        raise ReportError(f"run summary: {exc}") from None


__all__ = [
    "GridCell",
    "LossPoint",
    "ModelRow",
    "QuantRow",
    "ReportError",
    "RunSummary",
    "Speed",
    "validate_summary",
]
