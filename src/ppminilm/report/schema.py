"""Validation of the report's run summary (schema in :mod:`ppminilm.report.render`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ppminilm.errors import UserError

_NUM = (int, float)


class ReportError(UserError):
    """The run summary is malformed; the message names the field and what was expected."""


def _need(
    obj: Mapping[str, Any],
    key: str,
    where: str,
    kinds: type | tuple[type, ...],
    expected: str,
    optional: bool = False,
) -> Any:
    if key not in obj or obj[key] is None:
        if optional:
            return None
        raise ReportError(f"run summary: field '{where}{key}' is missing; expected {expected}")
    value = obj[key]
    allowed = kinds if isinstance(kinds, tuple) else (kinds,)
    # bool is an int subclass; a JSON true is never a count or an accuracy.
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ReportError(
            f"run summary: field '{where}{key}': expected {expected}, got "
            f"{type(value).__name__} {value!r:.60}"
        )
    return value


def _fraction(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = float(_need(obj, key, where, _NUM, "a number in [0, 1]"))
    if not 0.0 <= value <= 1.0:
        raise ReportError(
            f"run summary: field '{where}{key}': expected a fraction in [0, 1] "
            f"(accuracy, not percent), got {value}"
        )
    return value


def _positive(obj: Mapping[str, Any], key: str, where: str, optional: bool = False) -> float | None:
    value = _need(obj, key, where, _NUM, "a positive number", optional)
    if value is not None and value <= 0:
        raise ReportError(
            f"run summary: field '{where}{key}': expected a positive number, got {value}"
        )
    return value


def _list_of_dicts(
    obj: Mapping[str, Any], key: str, where: str = "", optional: bool = True
) -> list[Mapping[str, Any]]:
    items = _need(obj, key, where, list, "a list of objects", optional) or []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ReportError(
                f"run summary: field '{where}{key}[{i}]': expected an object, "
                f"got {type(item).__name__}"
            )
    return items


def validate_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Check a run summary against the schema and normalise it.

    Args:
        summary: The run summary (see the module docstring).

    Returns:
        A normalised copy: ``tasks`` filled in, numbers as floats/ints, optional sections as
        empty lists/dicts.

    Raises:
        ReportError: Naming the first malformed field.
    """
    if not isinstance(summary, Mapping):
        raise ReportError(f"run summary: expected a JSON object, got {type(summary).__name__}")
    models = _list_of_dicts(summary, "models", optional=False)
    if not models:
        raise ReportError(
            "run summary: field 'models' is empty; expected >= 1 model row "
            "(the first is the speed baseline)"
        )
    rows, seen_tasks = [], []
    for i, m in enumerate(models):
        w = f"models[{i}]."
        row: dict[str, Any] = {
            "name": _need(m, "name", w, str, "a model name string"),
            "params": _need(m, "params", w, int, "an integer parameter count"),
            "flops": _need(m, "flops", w, int, "an integer FLOPs count"),
            "precision": _need(m, "precision", w, str, "'fp32', 'fp16' or 'int8'", True) or "",
            "arch": dict(_need(m, "arch", w, Mapping, "a ModelArch object", True) or {}),
            "throughput": _positive(m, "throughput", w, optional=True),
        }
        latency = _need(m, "latency", w, Mapping, "an object with 'total_s'", True)
        row["total_s"] = _positive(latency, "total_s", f"{w}latency.") if latency else None
        row["p50_ms"] = _positive(latency, "p50_ms", f"{w}latency.", True) if latency else None
        row["p95_ms"] = _positive(latency, "p95_ms", f"{w}latency.", True) if latency else None
        acc = _need(m, "accuracy", w, Mapping, "an object {task: accuracy}")
        row["accuracy"] = {str(t): _fraction(acc, t, f"{w}accuracy.") for t in acc}
        seen_tasks += [t for t in row["accuracy"] if t not in seen_tasks]
        rows.append(row)
    tasks = _need(summary, "tasks", "", list, "a list of task names", True) or seen_tasks
    if not all(isinstance(t, str) for t in tasks):
        raise ReportError("run summary: field 'tasks': expected a list of task name strings")
    grid: dict[str, list[dict[str, Any]]] = {}
    for task, points in (
        _need(summary, "grid", "", Mapping, "an object {task: [points]}", True) or {}
    ).items():
        if not isinstance(points, list):
            raise ReportError(f"run summary: field 'grid.{task}': expected a list of points")
        grid[task] = []
        for j, p in enumerate(_list_of_dicts({"p": points}, "p")):
            w = f"grid.{task}[{j}]."
            grid[task].append(
                {
                    "batch_size": _need(p, "batch_size", w, int, "an integer"),
                    "learning_rate": _positive(p, "learning_rate", w),
                    "dev_acc": _fraction(p, "dev_acc", w),
                }
            )
    quant = []
    for j, q in enumerate(_list_of_dicts(summary, "quantization")):
        w = f"quantization[{j}]."
        quant.append(
            {
                "algo": _need(q, "algo", w, str, "an algorithm name"),
                "batch_num": _need(q, "batch_num", w, int, "an integer"),
                "acc": _fraction(q, "acc", w),
                "task": _need(q, "task", w, str, "a task name", True) or "",
                "selected": bool(q.get("selected", False)),
            }
        )
    loss = []
    for j, p in enumerate(_list_of_dicts(summary, "distill_loss")):
        w = f"distill_loss[{j}]."
        loss.append(
            {
                "step": _need(p, "step", w, int, "an integer"),
                "loss": float(_need(p, "loss", w, _NUM, "a number")),
            }
        )
    env = dict(_need(summary, "environment", "", Mapping, "an object", True) or {})
    bench = dict(_need(summary, "benchmark", "", Mapping, "an object", True) or {})
    title = _need(summary, "title", "", str, "a string", True) or "PP-MiniLM compression report"
    return {
        "title": title,
        "tasks": list(tasks),
        "models": rows,
        "grid": grid,
        "quantization": quant,
        "distill_loss": loss,
        "environment": env,
        "benchmark": bench,
    }
