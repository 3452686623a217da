"""The runner's machinery: stage declarations, the two doors, summaries, KFP publishing.

A stage is declared once with :func:`stage`: its name, config class, and which result fields
become KFP metrics and artifact metadata. The CLI (``ppminilm <stage>``) and the KFP
components both call the declared function through :func:`run_step` (components) or directly
under :func:`expected_errors` (CLI), so config resolution (defaults -> profile -> overrides ->
explicit fields), artifact layout and error reporting are the same on both paths.

Expected failures (:func:`ppminilm.errors.is_expected`) end as one log line and the exit code
of their class; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ppminilm.config import StageConfig
from ppminilm.contracts import StageSummary, numbers
from ppminilm.data.taskdir import TASK_FILE
from ppminilm.errors import UserError, exit_code_of, is_expected
from ppminilm.io import atomic_write_json, dumps_json, read_json_file
from ppminilm.progress import tag_records

logger = logging.getLogger("ppminilm.runner")

F = TypeVar("F", bound=Callable[..., StageSummary])

#: Sub-directories of the data artifact (the build-data step's output).
TASKS_DIR, CORPUS_DIR, VOCAB_DIR = "tasks", "corpus", "vocab"


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """A runner stage: what it is called, what it is configured by, what it reports.

    Attributes:
        name: The stage name (CLI subcommand, component name, summary ``stage``).
        config: The stage config class (``None`` for steps without one).
        metrics: Result fields logged as KFP ``Metrics`` (numbers only).
        metadata: Result fields copied onto the output artifact's metadata.
        run: The runner function.
    """

    name: str
    config: type[StageConfig] | None
    metrics: tuple[str, ...]
    metadata: tuple[str, ...]
    run: Callable[..., StageSummary]


#: Every declared stage by name, in pipeline order.
STAGES: dict[str, StageSpec] = {}


def stage(
    name: str,
    config: type[StageConfig] | None = None,
    *,
    metrics: Sequence[str] = (),
    metadata: Sequence[str] = (),
) -> Callable[[F], F]:
    """Declare a runner function as the stage ``name`` (registers it in :data:`STAGES`)."""

    def register(fn: F) -> F:
        if name in STAGES:
            raise RuntimeError(f"stage {name!r} declared twice")
        STAGES[name] = StageSpec(name, config, tuple(metrics), tuple(metadata), fn)
        return fn

    return register


def summarize(
    name: str,
    result: Mapping[str, Any],
    *,
    profile: str,
    cfg: StageConfig | None = None,
    metadata: Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    confusion: Any = None,
) -> StageSummary:
    """Build a stage's summary from its result and write it into ``out_dir`` (if given).

    Metrics and metadata come from the result fields the stage declared, plus ``metadata``.
    """
    spec = STAGES[name]
    meta = {k: result[k] for k in spec.metadata if k in result and result[k] is not None}
    meta.update({"profile": profile, **(metadata or {})})
    summary = StageSummary(
        stage=name,
        profile=profile,
        config=cfg.to_dict() if cfg is not None else {},
        result=dict(result),
        metrics=numbers(result, spec.metrics),
        metadata=_json_safe(meta),
        confusion=confusion,
    )
    if out_dir is not None and Path(out_dir).is_dir():
        summary.write(out_dir)
    return summary


def _json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    """Artifact metadata must be plain JSON scalars or lists of them (KFP stores a Struct)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple) and all(
            isinstance(v, str | int | float | bool) for v in value
        ):
            out[key] = list(value)
        else:
            out[key] = str(value)
    return out


# --------------------------------------------------------------------------- inputs


def task_of(task_dir: str | Path) -> str:
    """The task named by a task directory's ``task.json``.

    Raises:
        UserError: If the directory has no readable ``task.json`` with a ``task`` string.
    """
    path = Path(task_dir) / TASK_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such file (is {task_dir} a task directory?)")
    data = read_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("task"), str):
        raise UserError(f"{path}: field 'task': expected a task name string")
    return str(data["task"])


def resolve_task_dir(data: str | Path, task: str | None = None) -> Path:
    """The task directory for ``task`` in ``data``.

    ``data`` is either a task directory itself (CLI ``--task-dir``) or the data artifact of the
    build-data step, holding ``tasks/<task>/`` (KFP).

    Raises:
        UserError: If neither layout holds the task (names what was looked for).
    """
    from ppminilm.config import normalize_task

    root = Path(data)
    if (root / TASK_FILE).is_file():
        return root
    if task is None:
        raise UserError(f"{root}: not a task directory (no {TASK_FILE}) and no task was named")
    candidate = root / TASKS_DIR / normalize_task(task)
    if not candidate.is_dir():
        available = sorted(p.name for p in (root / TASKS_DIR).glob("*")) if root.is_dir() else []
        raise UserError(
            f"{root}: holds no task directory for {normalize_task(task)!r} (looked for "
            f"{root / TASK_FILE} and {candidate}; tasks there: {available or 'none'})"
        )
    return candidate


# --------------------------------------------------------------------------- doors


@contextlib.contextmanager
def expected_errors() -> Iterator[None]:
    """Turn an expected failure into one error line and ``SystemExit`` with its exit code."""
    try:
        yield
    except SystemExit:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt) or not is_expected(exc):
            raise
        logger.error("%s", exc)
        raise SystemExit(exit_code_of(exc)) from None


def run_step(
    stage_name: str,
    /,
    *,
    artifact: Any = None,
    metrics: Any = None,
    confusion: Any = None,
    extra_artifacts: Sequence[Any] = (),
    **kwargs: Any,
) -> StageSummary:
    """The KFP door: run stage ``name`` and copy its summary onto the KFP outputs.

    Args:
        stage_name: A declared stage (positional: a stage may take a ``name`` argument).
        artifact: Output artifact whose ``metadata`` receives the summary's metadata.
        metrics: Output ``Metrics``: each summary metric is logged.
        confusion: Output ``ClassificationMetrics``: the summary's confusion matrix.
        extra_artifacts: More output artifacts that get the same metadata.
        **kwargs: The stage function's arguments.

    Raises:
        SystemExit: With the failure's exit code, after one error line (expected failures).
    """
    spec = STAGES.get(stage_name)
    if spec is None:
        raise KeyError(f"unknown stage {stage_name!r}; declared: {sorted(STAGES)}")
    component_logging()
    tag_records(step_tag(stage_name, kwargs))
    started = time.perf_counter()
    logger.info("%s: started", stage_name)
    from ppminilm.runner.signals import handle_termination

    with handle_termination(), expected_errors():
        summary = spec.run(**kwargs)
    publish(
        summary,
        artifact=artifact,
        metrics=metrics,
        confusion=confusion,
        extra_artifacts=extra_artifacts,
    )
    logger.info("%s: done in %.1f s", stage_name, time.perf_counter() - started)
    return summary


def step_tag(stage_name: str, kwargs: Mapping[str, Any]) -> str:
    """What a pipeline step works on, for its log lines: ``finetune local_reviews bs16_lr0.001``.

    Display names in the Kubeflow UI are fixed at compile time, so the grid point (or the
    benchmark row) is carried in the logs, metrics and metadata instead.
    """
    parts = [stage_name]
    if kwargs.get("task"):
        parts.append(str(kwargs["task"]))
    if kwargs.get("batch_size") is not None and kwargs.get("learning_rate") is not None:
        parts.append(f"bs{int(kwargs['batch_size'])}_lr{float(kwargs['learning_rate']):g}")
    if kwargs.get("name"):
        parts.append(str(kwargs["name"]))
    return " ".join(parts)


def component_logging() -> None:
    """Show the stages' INFO progress (step i/n, loss, accuracy) in component logs.

    A component runs in a fresh interpreter where nothing configured logging, so ``ppminilm``
    INFO records would be dropped (the CLI configures logging itself).
    """
    pkg = logging.getLogger("ppminilm")
    if pkg.level == logging.NOTSET:
        pkg.setLevel(logging.INFO)  # the root logger (WARNING) would drop progress records
    if not pkg.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        pkg.addHandler(handler)


def publish(
    summary: StageSummary,
    *,
    artifact: Any = None,
    metrics: Any = None,
    confusion: Any = None,
    extra_artifacts: Sequence[Any] = (),
) -> None:
    """Copy a summary onto KFP output objects (duck-typed: no KFP import here)."""
    for target in (artifact, *extra_artifacts):
        if target is not None:
            target.metadata.update(summary.metadata)
    if metrics is not None:
        for key, value in summary.metrics.items():
            metrics.log_metric(key, float(value))
    if confusion is not None and summary.confusion is not None:
        matrix = [list(row) for row in summary.confusion.matrix]
        confusion.log_confusion_matrix(list(summary.confusion.labels), matrix)
    for logged in (metrics, confusion):
        if logged is not None and getattr(logged, "path", None):
            write_metrics_file(logged)


def write_metrics_file(logged: Any) -> None:
    """Write a metrics artifact's logged values to its file (``metadata`` as JSON).

    ``log_metric`` only fills ``metadata``. kfp.local's step cache drops an entry whose output
    artifact has no file, so without this a second ``make run`` reused no step (every step has
    a ``metrics`` output); on a cluster the launcher uploads the small file with the rest.
    """
    atomic_write_json(logged.path, dict(logged.metadata))


def emit(value: Any) -> None:
    """The CLI's one JSON emitter: a command's result on stdout (logs go to stderr)."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    sys.stdout.write(dumps_json(value))
    sys.stdout.flush()
