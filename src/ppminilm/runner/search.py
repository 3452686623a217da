"""Runner steps of stage 6, the compression search: check its parameters, choose a candidate.

* ``check-search`` runs first in the pipeline: the accuracy budget and the widths (each keeps
  whole attention heads of the student the profile distils) fail in seconds, not after
  distillation.
* ``select-candidate`` runs per task after the interleaved timing of every candidate: it
  applies :func:`ppminilm.stages.search.select`, writes the task's results (rows keyed by
  candidate, the timing and the choice) for the report, the frontier table, and a copy of the
  chosen model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import (
    DistillConfig,
    SearchConfig,
    check_width_list,
    check_widths,
    resolve,
    split_overrides,
)
from ppminilm.contracts import (
    SEARCH_FILE,
    BenchmarkResult,
    ContractError,
    SearchSelection,
    StageSummary,
    TaskResults,
    TimingResult,
    candidate_key,
)
from ppminilm.io import atomic_write_json, atomic_write_text, copy_dir, read_json_file
from ppminilm.runner.core import stage, summarize

logger = logging.getLogger(__name__)

#: Precisions in report order within one width.
_PRECISION_ORDER = ("fp32", "bf16", "fp16", "int8")


def search_config(
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    accuracy_budget: float | None = None,
    task: str | None = None,
) -> SearchConfig:
    """The search's config for a task.

    The pipeline's ``accuracy_budget`` is the caller's ``search`` layer, so a per-task
    override still wins for its task (``{"per_task": {"cluewsc2020": {"accuracy_budget":
    2.0}}}``: the seed's own WSC drop is 1.97 points).
    """
    layered: dict[str, Any] = dict(split_overrides(overrides))
    if accuracy_budget is not None:
        layered["search"] = {**layered.get("search", {}), "accuracy_budget": accuracy_budget}
    return resolve(SearchConfig, profile, layered, task=task)


def validate_search(
    widths: Sequence[float],
    accuracy_budget: float | None = None,
    *,
    do_distill: bool = True,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[tuple[float, ...], SearchConfig]:
    """The search's widths and config, checked (what ``check-search`` and ``make run`` do).

    Raises:
        ConfigError: Naming the parameter and what is allowed.
    """
    cfg = search_config(profile, overrides, accuracy_budget)
    if do_distill:
        student = resolve(DistillConfig, profile, overrides).student
        return check_widths(widths, student, "widths"), cfg
    return check_width_list(widths, "widths"), cfg


@stage("check-search", SearchConfig, metadata=("widths", "accuracy_budget"))
def check_search(
    *,
    widths: Sequence[float],
    accuracy_budget: float | None = None,
    do_distill: bool = True,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> StageSummary:
    """Check the search's parameters before anything trains.

    Args:
        widths: The pruning widths the search compares.
        accuracy_budget: Accepted dev accuracy drop in points (None: the profile's).
        do_distill: Whether the run distils the profile's student (then each width must keep
            whole heads of it); an imported student is checked by the prune step, against its
            own architecture, before it trains.
        profile: Profile name.
        overrides: Stage-keyed overrides (``search``, ``distill.student``).

    Raises:
        ConfigError: Naming the parameter and what is allowed.
    """
    checked, cfg = validate_search(
        widths, accuracy_budget, do_distill=do_distill, profile=profile, overrides=overrides
    )
    result = {"widths": list(checked), "accuracy_budget": cfg.accuracy_budget}
    logger.info("search: widths %s, accuracy budget %g points", list(checked), cfg.accuracy_budget)
    return summarize("check-search", result, profile=profile, cfg=cfg)


def _read_result(path: str | Path) -> BenchmarkResult:
    return BenchmarkResult.from_dict(read_json_file(path, ContractError), where=str(path))


def _order(row: BenchmarkResult) -> tuple[Any, ...]:
    """Report order: the widest first (the unpruned reference), FP32 before INT8."""
    precision = row.precision
    rank = _PRECISION_ORDER.index(precision) if precision in _PRECISION_ORDER else 99
    return (-int(row.arch.get("num_layers", 0)), -float(row.arch.get("width", 1.0)), rank)


@stage(
    "select-candidate",
    SearchConfig,
    metrics=(
        "accuracy_budget",
        "reference_dev_acc",
        "chosen_dev_acc",
        "chosen_drop_points",
        "chosen_test_acc",
        "chosen_speedup",
        "chosen_seconds_per_pass",
        "chosen_width",
        "chosen_int8",
        "chosen_params_millions",
        "candidates",
        "within_budget",
        "kept_fp32",
    ),
    metadata=("task", "chosen", "width", "precision", "engine", "fallback", "reason"),
)
def select_candidate(
    reference: str | Path,
    candidates: Sequence[str | Path],
    timing: str | Path,
    out: str | Path,
    *,
    models: Sequence[str | Path] = (),
    chosen_out: str | Path | None = None,
    frontier_md: str | Path | None = None,
    accuracy_budget: float | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
) -> StageSummary:
    """Choose a task's model: the fastest candidate within the accuracy budget.

    Args:
        reference: Benchmark result of the fine-tuned FP32 model (the budget's reference).
        candidates: Benchmark results of the compressed candidates (every width's FP32 and
            INT8 sub-model), in any order.
        timing: The interleaved timing of all of them (rows keyed by candidate).
        out: The task's results for the report (:class:`~ppminilm.contracts.TaskResults`
            with the selection).
        models: The candidates' inference models as benchmarked (reference included), any
            order; the chosen one is copied to ``chosen_out``.
        chosen_out: Where the chosen model goes (with ``search.json`` beside it).
        frontier_md: Where the frontier table (Markdown) goes.
        accuracy_budget: Accepted dev accuracy drop in points (None: the profile's); a
            per-task override wins for its task (:func:`search_config`).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"search": {...}}``, ``per_task``).

    Raises:
        ContractError: On results of several tasks, a candidate without timing, or no
            model for the chosen candidate.
    """
    from ppminilm.report import frontier_markdown
    from ppminilm.stages.search import candidates_from, select

    ref_row = _read_result(reference)
    rows = [ref_row, *(_read_result(p) for p in candidates)]
    rows = [r.replace(name=candidate_key(r.arch, r.precision)) for r in rows]
    rows = [rows[0], *sorted(rows[1:], key=_order)]
    merged = TaskResults.of(rows)
    merged.timing = TimingResult.from_dict(read_json_file(timing, ContractError), where=str(timing))
    if merged.timing.task != merged.task:
        raise ContractError(f"{timing}: timing of task {merged.timing.task!r}, not {merged.task!r}")
    cfg = search_config(profile, overrides, accuracy_budget, task=merged.task)
    tested = any(r.test_accuracy is not None for r in rows)
    selection = select(
        candidates_from(rows, merged.timing),
        rows[0].name,
        cfg.accuracy_budget,
        task=merged.task,
        report_split="test" if tested else "",
    )
    merged.selection = selection
    atomic_write_json(out, merged.to_dict())
    if frontier_md is not None:
        atomic_write_text(frontier_md, frontier_markdown(selection, rows[0].max_seq_len))
    if chosen_out is not None:
        _copy_chosen(models, selection, chosen_out)
    return summarize(
        "select-candidate", _result(selection), profile=profile, cfg=cfg, out_dir=chosen_out
    )


def _copy_chosen(
    models: Sequence[str | Path], selection: SearchSelection, chosen_out: str | Path
) -> Path:
    from ppminilm.modeling.export import read_serving_config

    found = {}
    for path in models:
        serving = read_serving_config(path)
        found[candidate_key(serving.arch or {"width": serving.width}, serving.precision)] = path
    if selection.chosen not in found:
        raise ContractError(
            f"no model given for the chosen candidate {selection.chosen!r}; models given: "
            f"{sorted(found)}"
        )
    target = copy_dir(found[selection.chosen], chosen_out, kind="inference")
    selection.save(target / SEARCH_FILE)
    return target


def _result(selection: SearchSelection) -> dict[str, Any]:
    chosen = selection.candidate(selection.chosen)
    return {
        "task": selection.task,
        "chosen": chosen.key,
        "reason": selection.reason,
        "fallback": selection.fallback,
        "width": chosen.width,
        "precision": chosen.precision,
        "engine": chosen.engine,
        "accuracy_budget": selection.budget_points,
        "reference_dev_acc": selection.reference_dev_acc,
        "chosen_dev_acc": chosen.dev_acc,
        "chosen_drop_points": chosen.drop_points,
        "chosen_test_acc": chosen.test_acc,
        "chosen_speedup": chosen.speedup,
        "chosen_seconds_per_pass": chosen.seconds_per_pass,
        "chosen_width": chosen.width,
        "chosen_int8": 1.0 if chosen.precision == "int8" else 0.0,
        "chosen_params_millions": chosen.params / 1e6,
        "candidates": len(selection.candidates),
        "within_budget": sum(c.within_budget for c in selection.candidates),
        "kept_fp32": 1.0 if selection.chosen == selection.reference else 0.0,
        "selection": selection.to_dict(),
    }


__all__ = ["check_search", "search_config", "select_candidate", "validate_search"]
