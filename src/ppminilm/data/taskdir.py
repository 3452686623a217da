"""Task data: CLUE-format JSON-lines splits, their validation, and the task directory artifact.

A task directory (the ``Dataset`` artifact every fine-tuning, pruning and quantization stage
reads) holds::

    train.json   labelled JSON lines, the task's own CLUE field names
    dev.json     labelled; the reported dev set
    calib.json   labelled; held out from train for pruning importance and PTQ calibration
    test.json    may lack labels
    labels.json  JSON list of label strings; position = label id
    task.json    {"task": name, "source": ...}

No two splits share an example (same text pair). Real CMNLI/OCNLI files contain lines whose
label is ``"-"`` (no annotator majority); the reader skips them and logs how many.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import normalize_task
from ppminilm.data.tasks import (
    NO_MAJORITY_LABEL,
    TASK_SPECS,
    FieldError,
    describe_value,
    example_to_text_pair,
    type_name,
)
from ppminilm.errors import UserError
from ppminilm.io import read_json_file, staged_dir, write_json

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "calib", "test")
#: File names of a task directory (splits are ``<split>.json``).
LABELS_FILE = "labels.json"
TASK_FILE = "task.json"
#: Splits that must carry labels.
LABELLED_SPLITS = ("train", "dev", "calib")
_NLI_TASKS = ("cmnli", "ocnli")
_ID_FIELDS = ("id", "idx")


class DataError(UserError):
    """A data file is not what a task expects.

    The message names the file, the 1-based line (when there is one), the field and what was
    expected, e.g. ``train.json:12: field 'label': expected one of ['0', '1'], got '7'``.

    Attributes:
        path: The offending file (or a description of an in-memory split).
        line: 1-based line number, or None for file-level problems.
        field: The field (``<record>`` for the whole line, ``<file>`` for the whole file).
        expected: What was expected.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field or "<file>"
        self.expected = expected or ""
        if field is None:  # a message already formatted (e.g. by ppminilm.io's JSON reader)
            super().__init__(str(path))
            return
        where = f"{self.path}:{line}" if line is not None else self.path
        msg = f"{where}: field '{field}': expected {expected}"
        if got is not None:
            msg += f", got {got}"
        super().__init__(msg)


def label_to_id(labels: Sequence[str]) -> dict[str, int]:
    """Map label strings to ids by position.

    Args:
        labels: Label strings in id order.

    Returns:
        ``{label: id}``.

    Raises:
        ValueError: If a label repeats.
    """
    mapping = {label: i for i, label in enumerate(labels)}
    if len(mapping) != len(labels):
        raise ValueError(f"labels repeat: {list(labels)}")
    return mapping


def _validate_records(
    records: Iterable[tuple[int, Any]], where: str, task: str, require_labels: bool
) -> list[tuple[int, dict[str, Any]]]:
    """Check parsed records; return the kept ``(line, record)`` pairs.

    ``where`` names the file in messages.
    """
    spec = TASK_SPECS[task]
    allowed = set(spec.labels)
    shown = (
        list(spec.labels)
        if len(spec.labels) <= 20
        else (f"one of the {len(spec.labels)} labels {spec.labels[0]!r}..{spec.labels[-1]!r}")
    )
    seen_ids: dict[tuple[str, Any], int] = {}
    kept: list[tuple[int, dict[str, Any]]] = []
    skipped = 0
    for line, record in records:
        if not isinstance(record, dict):
            raise DataError(
                where,
                line,
                "<record>",
                "a JSON object",
                f"{type_name(record)} {describe_value(record)}",
            )
        try:
            example_to_text_pair(record, task)
        except FieldError as exc:
            raise DataError(where, line, exc.field, exc.expected, exc.got) from None
        if "label" in record:
            label = record["label"]
            if task in _NLI_TASKS and label == NO_MAJORITY_LABEL:
                skipped += 1
                continue
            if not isinstance(label, str):
                raise DataError(
                    where, line, "label", "a string", f"{type_name(label)} {describe_value(label)}"
                )
            if label not in allowed:
                raise DataError(where, line, "label", f"one of {shown}", repr(label))
        elif require_labels:
            raise DataError(
                where, line, "label", f"one of {shown}", "nothing (the field is missing)"
            )
        for key in _ID_FIELDS:
            if key in record:
                value = record[key]
                if not isinstance(value, int | str) or isinstance(value, bool):
                    raise DataError(
                        where,
                        line,
                        key,
                        "an integer or string id",
                        f"{type_name(value)} {describe_value(value)}",
                    )
                first = seen_ids.setdefault((key, value), line)
                if first != line:
                    raise DataError(
                        where, line, key, "a unique id", f"{value!r}, already used on line {first}"
                    )
        kept.append((line, record))
    if skipped:
        logger.info(
            "%s: skipped %d %s line(s) labelled %r (no annotator majority)",
            where,
            skipped,
            task,
            NO_MAJORITY_LABEL,
        )
    if not kept:
        raise DataError(where, 1, "<file>", "at least one example", "an empty split")
    return kept


def _json_lines(path: Path) -> Iterable[tuple[int, Any]]:
    with path.open("rb") as handle:
        for line_no, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(
                    path, line_no, "<record>", "UTF-8 text", f"byte {exc.start} ({exc.reason})"
                ) from None
            if not raw.strip():
                continue
            try:
                yield line_no, json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(
                    path,
                    line_no,
                    "<record>",
                    "one JSON object per line",
                    f"invalid JSON at column {exc.colno} ({exc.msg})",
                ) from None


def read_split(
    path: str | os.PathLike[str], task: str, require_labels: bool = True
) -> list[dict[str, Any]]:
    """Read and validate one JSON-lines split.

    Blank lines are ignored. CMNLI/OCNLI lines labelled ``"-"`` are skipped (count logged).

    Args:
        path: The ``.json`` file (one JSON object per line).
        task: Task name (any case).
        require_labels: Whether every line must have a ``label``.

    Returns:
        The examples, as parsed.

    Raises:
        DataError: Naming file, line and field for a missing file, malformed JSON, a missing
            or mistyped field, an unknown label, a duplicated ``id``/``idx`` or an empty split.
    """
    return [record for _, record in _read_split_lines(path, task, require_labels)]


def _read_split_lines(
    path: str | os.PathLike[str], task: str, require_labels: bool
) -> list[tuple[int, dict[str, Any]]]:
    task = normalize_task(task)
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path, None, "<file>", f"an existing JSON-lines file of task {task}", "no such file"
        )
    return _validate_records(_json_lines(path), str(path), task, require_labels)


@dataclasses.dataclass
class TaskData:
    """One task directory, loaded and validated.

    Attributes:
        task: Canonical task name.
        labels: Label strings in id order (from ``labels.json``).
        train: Training examples.
        dev: Reported dev examples.
        calib: Held-out examples for pruning importance and PTQ calibration.
        test: Test examples (labels optional).
        source: Where the data came from (``task.json``).
    """

    task: str
    labels: list[str]
    train: list[dict[str, Any]]
    dev: list[dict[str, Any]]
    calib: list[dict[str, Any]]
    test: list[dict[str, Any]]
    source: str = ""

    @property
    def label_ids(self) -> dict[str, int]:
        """``{label: id}`` in ``labels`` order."""
        return label_to_id(self.labels)

    def split(self, name: str) -> list[dict[str, Any]]:
        """Return a split by name (``train``, ``dev``, ``calib`` or ``test``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        """Examples per split."""
        return {name: len(self.split(name)) for name in SPLITS}

    def check_model(
        self, task: str, labels: Sequence[str], where: str, *, same_order: bool = True
    ) -> None:
        """The one model-vs-task check: a model trained for this task and these labels.

        Args:
            task: The model's task (empty when it does not record one).
            labels: The model's labels in id order.
            where: The model's file that records them, for the message.
            same_order: Also require the same label order (a classifier head indexes by it;
                the benchmark maps labels by name and passes False).

        Raises:
            UserError: Naming both sides when they differ.
        """
        if task and task != self.task:
            raise UserError(
                f"{where}: the model is for task {task!r} but the task directory holds "
                f"{self.task!r}"
            )
        same = list(labels) == list(self.labels) if same_order else set(labels) == set(self.labels)
        if not same or len(labels) != len(self.labels):
            raise UserError(
                f"{where}: model labels {list(labels)} differ from the task directory's "
                f"{LABELS_FILE} {self.labels}"
            )


def _read_json(path: Path, field: str, expected: str) -> Any:
    if not path.is_file():
        raise DataError(path, None, field, expected, "no such file")
    return read_json_file(path, DataError)


def _check_labels(labels: Any, task: str, where: str) -> list[str]:
    spec = TASK_SPECS[task]
    if (
        not isinstance(labels, list)
        or not all(isinstance(x, str) for x in labels)
        or sorted(labels) != sorted(spec.labels)
    ):
        raise DataError(
            where,
            1,
            "<labels>",
            f"a JSON list holding exactly the {task} labels {list(spec.labels)}",
            describe_value(labels, 120),
        )
    return list(labels)


def _check_disjoint(
    splits: Mapping[str, Sequence[tuple[int, Mapping[str, Any]]]],
    task: str,
    names: Mapping[str, str],
) -> None:
    """Raise DataError if two splits hold the same text pair.

    ``splits`` maps split -> ``(line, example)`` pairs; ``names`` maps split -> file.
    """
    owner: dict[tuple[str, str | None], tuple[str, int]] = {}
    for split in SPLITS:
        for line, example in splits.get(split, ()):
            key = example_to_text_pair(example, task)
            first = owner.setdefault(key, (split, line))
            if first[0] != split:
                raise DataError(
                    names[split],
                    line,
                    "text",
                    f"an example not already in {names[first[0]]}",
                    f"the same text as its line {first[1]}",
                )


def load_task_dir(path: str | os.PathLike[str], task: str | None = None) -> TaskData:
    """Load and validate a task directory.

    Args:
        path: The task directory.
        task: Expected task name; None reads it from ``task.json``.

    Returns:
        The validated task data.

    Raises:
        DataError: On a missing/malformed file, a task mismatch, bad labels, an invalid
            split or an example shared by two splits.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(
            root,
            None,
            "<dir>",
            "a task directory (train/dev/calib/test.json, labels.json, task.json)",
            "no such directory",
        )
    meta = _read_json(root / TASK_FILE, "task", 'a JSON object {"task": name, "source": ...}')
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise DataError(root / TASK_FILE, 1, "task", "a task name string", describe_value(meta))
    try:
        dir_task = normalize_task(meta["task"])
    except ValueError as exc:
        raise DataError(root / TASK_FILE, 1, "task", str(exc)) from None
    if task is not None and normalize_task(task) != dir_task:
        raise DataError(
            root / TASK_FILE, 1, "task", f"task {normalize_task(task)!r}", repr(dir_task)
        )
    labels = _check_labels(
        _read_json(root / LABELS_FILE, "<labels>", "a JSON list of label strings"),
        dir_task,
        str(root / LABELS_FILE),
    )
    lines = {
        name: _read_split_lines(
            root / f"{name}.json", dir_task, require_labels=name in LABELLED_SPLITS
        )
        for name in SPLITS
    }
    _check_disjoint(lines, dir_task, {s: str(root / f"{s}.json") for s in SPLITS})
    splits = {name: [record for _, record in lines[name]] for name in SPLITS}
    return TaskData(task=dir_task, labels=labels, source=str(meta.get("source", "")), **splits)


def write_task_dir(
    path: str | os.PathLike[str],
    task: str,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Sequence[str] | None = None,
    source: str = "",
) -> Path:
    """Validate and write a task directory atomically (temp dir, then rename).

    Args:
        path: Target directory; replaced if it exists.
        task: Task name (any case).
        splits: ``train``, ``dev``, ``calib`` and ``test`` example lists.
        labels: Label strings in id order; None uses ``TASK_SPECS[task].labels``.
        source: Provenance written to ``task.json``.

    Returns:
        The written directory.

    Raises:
        DataError: If a split is missing, invalid, or shares examples with another (nothing
            is written then).
    """
    task = normalize_task(task)
    root = Path(path)
    labels = list(TASK_SPECS[task].labels if labels is None else labels)
    _check_labels(labels, task, "labels")
    missing = [s for s in SPLITS if s not in splits]
    if missing or set(splits) - set(SPLITS):
        raise DataError(
            "splits", None, "<splits>", f"exactly the splits {list(SPLITS)}", f"{sorted(splits)}"
        )
    clean = {
        name: _validate_records(
            enumerate(splits[name], start=1),
            f"{name}.json (to write)",
            task,
            require_labels=name in LABELLED_SPLITS,
        )
        for name in SPLITS
    }
    _check_disjoint(clean, task, {s: f"{s}.json (to write)" for s in SPLITS})
    with staged_dir(root, replace=True, kind="task") as tmp:
        for name in SPLITS:
            with (tmp / f"{name}.json").open("w", encoding="utf-8") as handle:
                for _, example in clean[name]:
                    handle.write(json.dumps(example, ensure_ascii=False) + "\n")
        write_json(tmp / LABELS_FILE, labels)
        write_json(tmp / TASK_FILE, {"task": task, "source": source})
    logger.info("wrote %s task dir %s: %s", task, root, {name: len(clean[name]) for name in SPLITS})
    return root
