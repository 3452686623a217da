"""One JSON-lines split file: reading and validating its records (``file:line:field`` errors).

In memory every example carries its label, when it has one, as the string field ``label``:
a custom task whose ``task.json`` names another ``label_field`` (or whose files hold integer
labels) has it copied there while reading; the files themselves are never rewritten.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ppminilm.data.tasks import (
    NO_MAJORITY_LABEL,
    FieldError,
    TaskSpec,
    describe_value,
    example_to_text_pair,
    task_spec,
    type_name,
)
from ppminilm.errors import UserError

logger = logging.getLogger(__name__)

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


def _label(record: dict[str, Any], spec: TaskSpec) -> str | None:
    """The record's label as a string, or None when it has none.

    Built-in tasks take strings only (CLUE's files hold strings); a custom task also takes
    integers (``1`` matches the label ``"1"``).
    """
    if spec.label_field not in record:
        return None
    label = record[spec.label_field]
    if isinstance(label, str):
        return label
    if spec.custom and isinstance(label, int) and not isinstance(label, bool):
        return str(label)
    want = "a string or an integer" if spec.custom else "a string"
    raise FieldError(spec.label_field, want, f"{type_name(label)} {describe_value(label)}")


def validate_records(
    records: Iterable[tuple[int, Any]], where: str, task: str | TaskSpec, require_labels: bool
) -> list[tuple[int, dict[str, Any]]]:
    """Check parsed records; return the kept ``(line, record)`` pairs (labels as ``label``).

    Args:
        records: ``(line, parsed JSON)`` pairs.
        where: The file (or description) named in messages.
        task: The task's name or spec.
        require_labels: Whether every record must carry a label.

    Raises:
        DataError: On the first bad record, or an empty split.
    """
    spec = task_spec(task)
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
            example_to_text_pair(record, spec)
            label = _label(record, spec)
        except FieldError as exc:
            raise DataError(where, line, exc.field, exc.expected, exc.got) from None
        if label is not None:
            if spec.name in _NLI_TASKS and label == NO_MAJORITY_LABEL:
                skipped += 1
                continue
            if label not in allowed:
                raise DataError(where, line, spec.label_field, f"one of {shown}", repr(label))
            if spec.label_field != "label" or record.get("label") != label:
                record = {**record, "label": label}
        elif require_labels:
            raise DataError(
                where, line, spec.label_field, f"one of {shown}", "nothing (the field is missing)"
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
            spec.name,
            NO_MAJORITY_LABEL,
        )
    if not kept:
        raise DataError(where, 1, "<file>", "at least one example", "an empty split")
    return kept


def json_lines(path: Path) -> Iterable[tuple[int, Any]]:
    """``(line, parsed JSON)`` for every non-blank line of a UTF-8 JSON-lines file."""
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


def read_split_lines(
    path: str | os.PathLike[str], task: str | TaskSpec, require_labels: bool
) -> list[tuple[int, dict[str, Any]]]:
    """Read and validate one split file; ``(line, record)`` pairs (see :func:`read_split`)."""
    spec = task_spec(task)
    path = Path(path)
    if not path.is_file():
        raise DataError(
            path, None, "<file>", f"an existing JSON-lines file of task {spec.name}", "no such file"
        )
    return validate_records(json_lines(path), str(path), spec, require_labels)


def read_split(
    path: str | os.PathLike[str], task: str | TaskSpec, require_labels: bool = True
) -> list[dict[str, Any]]:
    """Read and validate one JSON-lines split.

    Blank lines are ignored. CMNLI/OCNLI lines labelled ``"-"`` are skipped (count logged).

    Args:
        path: The ``.json`` file (one JSON object per line).
        task: Task name (any case) or spec; a custom task must be known (:func:`task_spec`).
        require_labels: Whether every line must have a label.

    Returns:
        The examples, as parsed (labels copied to ``label`` as strings, see the module
        docstring).

    Raises:
        DataError: Naming file, line and field for a missing file, malformed JSON, a missing
            or mistyped field, an unknown label, a duplicated ``id``/``idx`` or an empty split.
    """
    return [record for _, record in read_split_lines(path, task, require_labels)]
