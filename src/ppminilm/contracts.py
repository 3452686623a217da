"""What crosses a stage boundary: typed records and the artifact file names, declared once.

Every record is a :class:`~ppminilm.config.Record`: typed fields checked at construction,
``to_dict``/``from_dict`` with strict keys, ``save``/``load`` as JSON in the project's style.

Artifact layout (the file names below are the only spelling of each):

=======================  ==================================================================
artifact                 files
=======================  ==================================================================
any stage output         ``stage_summary.json`` (:class:`StageSummary`)
saved model              ``model.safetensors``, ``model_config.json``, tokenizer files,
                         ``provenance.json`` (:class:`Provenance`), ``README.md``; unpruned
                         also ``config.json`` (PaddleNLP's Auto classes load it)
inference model          ``inference.pdmodel``/``.pdiparams``, ``serving.json``, tokenizer
                         files, ``provenance.json``
distilled student        a saved model plus ``loss_curve.json``
benchmark result         one JSON file (:class:`BenchmarkResult`)
one task's results       one JSON file (:class:`TaskResults`), with the compression search's
                         choice (:class:`SearchSelection`)
=======================  ==================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config.base import Record
from ppminilm.errors import UserError
from ppminilm.io import read_json_file

#: Summary every runner step leaves in its (directory) output.
STAGE_SUMMARY_FILE = "stage_summary.json"
#: Weights, config and provenance of a saved (dynamic) model. Weights are safetensors (not
#: executable); ``.pdparams`` pickles are read for older and PaddleNLP directories only.
WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "model_state.pdparams"
MODEL_CONFIG_FILE = "model_config.json"
PROVENANCE_FILE = "provenance.json"
#: PaddleNLP's config beside an unpruned model's weights, and the model card.
PADDLENLP_CONFIG_FILE = "config.json"
MODEL_CARD_FILE = "README.md"
#: Static inference model: ``<MODEL_PREFIX>.pdmodel`` / ``.pdiparams`` and its serving config.
MODEL_PREFIX = "inference"
SERVING_FILE = "serving.json"
#: Distillation loss curve beside the student's weights.
LOSS_CURVE_FILE = "loss_curve.json"
#: Grid table written by the grid search and the selection step.
GRID_JSON = "grid.json"
GRID_MD = "grid.md"
#: PTQ candidates written by the quantize stage.
CANDIDATES_JSON = "candidates.json"
CANDIDATES_MD = "candidates.md"
#: The compression search's choice (:class:`SearchSelection`) beside the chosen model.
SEARCH_FILE = "search.json"
#: Result file written by ``ppminilm infer bench``.
BENCHMARK_FILE = "benchmark.json"
#: The core stages' own summaries inside their output directories.
PRUNE_SUMMARY_FILE = "prune_summary.json"
QUANT_SUMMARY_FILE = "quantize_summary.json"
LOCAL_DATA_SUMMARY_FILE = "summary.json"


class ContractError(UserError):
    """An artifact's JSON does not match its contract (names the file and the field)."""


@dataclasses.dataclass
class GridPoint(Record):
    """One point of the fine-tuning grid (a ``dsl.ParallelFor`` item)."""

    batch_size: int
    learning_rate: float

    @property
    def tag(self) -> str:
        """Short label for logs and directories: ``bs32_lr0.001``."""
        return f"bs{self.batch_size}_lr{self.learning_rate:g}"


@dataclasses.dataclass
class EvalPoint(Record):
    """One dev evaluation during training."""

    step: int
    epoch: int
    dev_acc: float


@dataclasses.dataclass
class FinetuneResult(Record):
    """What one fine-tuning run (one grid point) reports; the grid's unit of selection."""

    task: str
    batch_size: int
    learning_rate: float
    best_dev_acc: float
    best_step: int
    majority_acc: float = 0.0
    train_examples: int = 0
    dev_examples: int = 0
    steps: int = 0
    epochs: int = 0
    init: str = ""
    evals: Sequence[EvalPoint] = ()
    train_loss_start: float = 0.0
    train_loss_end: float = 0.0
    seconds: float = 0.0
    model_dir: str = ""

    @property
    def point(self) -> GridPoint:
        """The grid point this run trained."""
        return GridPoint(batch_size=self.batch_size, learning_rate=self.learning_rate)


@dataclasses.dataclass
class Lineage(Record):
    """How a model came to be: the grid it was selected from and each later stage's record."""

    grid: Sequence[FinetuneResult] = ()
    finetune: FinetuneResult | None = None
    prune: dict[str, Any] = dataclasses.field(default_factory=dict)
    quantize: dict[str, Any] = dataclasses.field(default_factory=dict)

    def merged(self, other: Lineage) -> Lineage:
        """This lineage with ``other``'s non-empty parts laid over it."""
        return Lineage(
            grid=other.grid or self.grid,
            finetune=other.finetune or self.finetune,
            prune=other.prune or self.prune,
            quantize=other.quantize or self.quantize,
        )


@dataclasses.dataclass
class Provenance(Record):
    """``provenance.json`` beside every saved model: how it was made (STYLE rule 5)."""

    stage: str
    params: int
    flops_seq128: int
    arch: dict[str, Any]
    versions: dict[str, str]
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    parent: str = ""
    format: str = "paddle-dygraph"
    precision: str = "fp32"
    lineage: Lineage = dataclasses.field(default_factory=Lineage)
    #: Stage-specific facts (best step, width, PTQ algo, data fingerprint...).
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def read(cls, model_dir: str | Path) -> Provenance | None:
        """The provenance of a model directory, or None when it has none.

        Raises:
            ContractError: If the file exists but does not match the contract.
        """
        path = Path(model_dir) / PROVENANCE_FILE
        if not path.is_file():
            return None
        return cls.from_dict(read_json_file(path, ContractError), where=str(path))


@dataclasses.dataclass
class Latency(Record):
    """Per-batch latency over all timed passes, in milliseconds."""

    p50: float
    p95: float
    mean: float
    p99: float = 0.0


@dataclasses.dataclass
class Confusion(Record):
    """A confusion matrix: rows are true labels, columns predicted ones."""

    labels: Sequence[str]
    matrix: Sequence[Sequence[int]]


@dataclasses.dataclass
class BenchmarkResult(Record):
    """One model timed end to end on one task's split (the benchmark stage's output)."""

    task: str
    split: str
    examples: int
    batches: int
    device: str
    precision: str
    threads: int
    batch_size: int
    max_seq_len: int
    warmup_batches: int
    repeats: int
    timed_batches: int
    timed_examples: int
    latency_ms: Latency
    total_s: float
    total_s_per_pass: Sequence[float]
    throughput: float
    accuracy: float
    confusion_matrix: Confusion
    #: Evidence of INT8 kernels (see ``ppminilm.inference.predictor.inspect_optimized_program``).
    int8_check: dict[str, Any]
    model_dir: str = ""
    cpu: str = ""
    use_mkldnn: bool = True
    use_trt: bool = False
    paddle_version: str = ""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Report row name, architecture and size (filled in by the pipeline's benchmark step).
    name: str = ""
    arch: dict[str, Any] = dataclasses.field(default_factory=dict)
    params: int | None = None
    flops: int | None = None
    lineage: Lineage = dataclasses.field(default_factory=Lineage)
    #: Accuracy on the task's labelled test split (None: it has none); untimed, and seen by
    #: no selection.
    test_accuracy: float | None = None
    test_examples: int = 0
    #: The engine that ran it (``ppminilm.inference.engines``), its version and settings; with
    #: ``engine='auto'`` every candidate's figures (``engines``) and why this one won.
    engine: str = "paddle"
    engine_version: str = ""
    engine_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    engines: dict[str, Any] = dataclasses.field(default_factory=dict)
    engine_choice: str = ""
    #: Where the deployable copy of the model that ran went (its serving.json names the engine).
    deploy_dir: str = ""
    #: CPU ISA flags (AVX2/AVX-512/VNNI/BF16/AMX; ``ppminilm.inference.cpuinfo``).
    cpu_isa: dict[str, bool] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TimedRow(Record):
    """One row of the interleaved timing (``ppminilm.inference.timing``)."""

    seconds_per_pass: Sequence[float]
    passes: Sequence[int]
    median_s: float
    #: Trimmed mean of the per-round ratios baseline / this row (``inference.timing``), and
    #: the lowest and highest ratio.
    speedup: float
    speedup_low: float
    speedup_high: float
    precision: str = "fp32"
    arch: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The engine the row ran on (serving.json's; the INT8 row's may be a CPU peer).
    engine: str = "paddle"


@dataclasses.dataclass
class TimingResult(Record):
    """Every row of one task timed in one process, interleaved (the report's speed column)."""

    task: str
    baseline: str
    rows: dict[str, TimedRow]
    protocol: dict[str, Any]
    description: str
    device: str = "cpu"
    cpu: str = ""
    threads: int = 0
    batch_size: int = 0
    max_seq_len: int = 0
    examples: int = 0


def candidate_key(arch: Mapping[str, Any], precision: str) -> str:
    """A search candidate's name: ``6L-w0.75-int8`` (layers, width, precision).

    The one spelling of a candidate: the timing rows, the benchmark rows of a task's results
    and the search's choice are all keyed by it.
    """
    layers = arch.get("num_layers", "?")
    width = float(arch.get("width", 1.0))
    return f"{layers}L-w{width:g}-{precision}"


@dataclasses.dataclass
class SearchCandidate(Record):
    """One candidate of the compression search: its accuracy, size and measured speed."""

    key: str
    width: float
    num_layers: int
    precision: str
    #: Dev accuracy (fraction) and its drop below the fine-tuned FP32 model, in points.
    dev_acc: float
    drop_points: float
    params: int
    flops: int
    #: Seconds per dev pass: median over the timing rounds, and the fastest / slowest round.
    seconds_per_pass: float
    fastest_s: float
    slowest_s: float
    engine: str = "paddle"
    #: Seconds per dev pass in each timing round (every candidate timed in the same rounds,
    #: interleaved, so per-round ratios cancel the machine's load).
    round_seconds: Sequence[float] = ()
    #: Speed-up over the speed baseline row (trimmed mean of the rounds' ratios), if timed.
    speedup: float | None = None
    #: Accuracy on a labelled test split no selection saw (None: the task has none).
    test_acc: float | None = None
    within_budget: bool = False
    #: Within budget and as fast as the fastest such candidate, up to the measured spread.
    tied_fastest: bool = False
    chosen: bool = False

    @property
    def spread_s(self) -> float:
        """Round-to-round range of the seconds per pass (slowest minus fastest round)."""
        return self.slowest_s - self.fastest_s


@dataclasses.dataclass
class SearchSelection(Record):
    """The compression search's choice for one task, and every candidate it weighed."""

    task: str
    #: Points of dev accuracy accepted below the reference (the fine-tuned FP32 model).
    budget_points: float
    reference: str
    reference_dev_acc: float
    chosen: str
    #: Why this candidate (one or two sentences, plain text).
    reason: str
    candidates: Sequence[SearchCandidate]
    #: The reference was kept because no compressed candidate is within the budget.
    fallback: bool = False
    #: The split every selection used, and the one only reported.
    select_split: str = "dev"
    report_split: str = ""
    rule: str = ""

    def candidate(self, key: str) -> SearchCandidate:
        """The candidate called ``key``.

        Raises:
            ContractError: Naming the known candidates.
        """
        for c in self.candidates:
            if c.key == key:
                return c
        raise ContractError(
            f"search of {self.task!r} has no candidate {key!r}; "
            f"candidates: {[c.key for c in self.candidates]}"
        )


@dataclasses.dataclass
class TaskResults(Record):
    """One task's benchmark rows, in report order (fine-tuned FP32, then per width its FP32
    and INT8 sub-models), their interleaved timing and the search's choice among them."""

    task: str
    rows: Sequence[BenchmarkResult]
    timing: TimingResult | None = None
    selection: SearchSelection | None = None

    @classmethod
    def of(cls, rows: Sequence[BenchmarkResult]) -> TaskResults:
        """Group rows of one task.

        Raises:
            ContractError: If the rows belong to several tasks (or there are none).
        """
        tasks = sorted({r.task for r in rows})
        if len(tasks) != 1:
            raise ContractError(f"benchmark results of one task expected, got tasks {tasks}")
        return cls(task=tasks[0], rows=tuple(rows))


@dataclasses.dataclass
class StageSummary(Record):
    """What a runner step reports: its result, the config it ran with, KFP metrics/metadata."""

    stage: str
    profile: str = ""
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The stage's own result (a typed record's ``to_dict`` where the stage has one).
    result: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Numbers for KFP ``Metrics``.
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Metadata for the output artifact (shown in the KFP UI).
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    confusion: Confusion | None = None

    def write(self, out_dir: str | Path) -> Path:
        """Write ``stage_summary.json`` into a (finished) output directory."""
        return self.save(Path(out_dir) / STAGE_SUMMARY_FILE)

    @classmethod
    def read(cls, artifact_dir: str | Path) -> StageSummary:
        """Read the summary a runner step left in its output directory.

        Raises:
            ContractError: Naming the directory when the summary is missing or malformed.
        """
        path = Path(artifact_dir) / STAGE_SUMMARY_FILE
        if not path.is_file():
            raise ContractError(
                f"{artifact_dir}: no {STAGE_SUMMARY_FILE} (not written by a ppminilm stage, or "
                "the stage did not finish)"
            )
        return cls.from_dict(read_json_file(path, ContractError), where=str(path))


def numbers(values: Mapping[str, Any], keys: Sequence[str]) -> dict[str, float]:
    """The numeric entries of ``values`` among ``keys``, as floats (for KFP metrics)."""
    return {
        k: float(values[k])
        for k in keys
        if isinstance(values.get(k), int | float) and not isinstance(values.get(k), bool)
    }
