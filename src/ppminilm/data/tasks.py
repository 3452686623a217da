"""Task schema: what each classification task looks like and how an example becomes text.

:class:`TaskSpec`, :data:`TASK_SPECS` and :func:`example_to_text_pair` cover the seven CLUE
tasks and the two local tasks built in the same format. Any other task is a *custom* task:
its task directory's ``task.json`` describes it::

    {"task": "my_intents", "labels": ["buy", "sell", "other"],
     "text_fields": ["query"], "label_field": "intent"}

(``text_fields``: one field, or two for a text pair; ``label_field`` defaults to ``label``).
:func:`task_spec` is the one lookup of a task's spec by name: built-in tasks, custom tasks
already loaded in this process (:func:`register_task`, done by the task-directory loader) and,
given a task directory, its ``task.json``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppminilm.config import ALL_TASKS, is_builtin_task, normalize_task
from ppminilm.errors import UserError

#: Label of NLI lines without an annotator majority in the real CMNLI/OCNLI files.
NO_MAJORITY_LABEL = "-"


class FieldError(UserError):
    """One field of an in-memory example is missing or malformed (no file or line known)."""

    def __init__(self, field: str, expected: str, got: str | None = None) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(
            f"field '{field}': expected {expected}" + (f", got {got}" if got is not None else "")
        )


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What one classification task looks like on disk.

    Attributes:
        name: Canonical task name.
        text_a: Where the first text comes from (description).
        text_b: Where the second text comes from, or None for single-text tasks.
        labels: Label strings in id order.
        is_pair: Whether examples are text pairs.
        label_names: What a label code means, for people (confusion matrices, reports);
            labels without an entry are shown as they are.
        text_fields: A custom task's text field names (one, or two for pairs); empty for
            the built-in tasks, whose mapping is :func:`example_to_text_pair`'s.
        label_field: The field holding the label in the files.
        custom: Whether the task is described by a ``task.json`` (not built in).
    """

    name: str
    text_a: str
    text_b: str | None
    labels: tuple[str, ...]
    is_pair: bool
    label_names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    text_fields: tuple[str, ...] = ()
    label_field: str = "label"
    custom: bool = False

    def display(self, label: str) -> str:
        """The readable name of a label (``1`` -> ``positive``)."""
        return self.label_names.get(label, label)


#: TNEWS category codes as CLUE's labels.json names them.
_TNEWS_NAMES = {
    "100": "story",
    "101": "culture",
    "102": "entertainment",
    "103": "sports",
    "104": "finance",
    "106": "house",
    "107": "car",
    "108": "edu",
    "109": "tech",
    "110": "military",
    "112": "travel",
    "113": "world",
    "114": "stock",
    "115": "agriculture",
    "116": "game",
}


_NLI_LABELS = ("contradiction", "entailment", "neutral")
TASK_SPECS: dict[str, TaskSpec] = {
    "afqmc": TaskSpec(
        "afqmc", "sentence1", "sentence2", ("0", "1"), True, {"0": "different", "1": "same"}
    ),
    "tnews": TaskSpec(
        "tnews",
        "sentence",
        None,
        tuple(str(i) for i in range(100, 117) if i not in (105, 111)),
        False,
        _TNEWS_NAMES,
    ),
    "iflytek": TaskSpec("iflytek", "sentence", None, tuple(str(i) for i in range(119)), False),
    "cmnli": TaskSpec("cmnli", "sentence1", "sentence2", _NLI_LABELS, True),
    "ocnli": TaskSpec("ocnli", "sentence1", "sentence2", _NLI_LABELS, True),
    "cluewsc2020": TaskSpec(
        "cluewsc2020",
        "text with target.span1 as _x_ and span2 as [y]",
        None,
        ("true", "false"),
        False,
    ),
    "csl": TaskSpec(
        "csl", "' '.join(keyword)", "abst", ("0", "1"), True, {"0": "not-keywords", "1": "keywords"}
    ),
    "local_reviews": TaskSpec(
        "local_reviews", "sentence", None, ("0", "1"), False, {"0": "negative", "1": "positive"}
    ),
    "local_pairs": TaskSpec(
        "local_pairs", "sentence1", "sentence2", ("0", "1"), True, {"0": "random", "1": "next"}
    ),
}


#: Keys a custom task's ``task.json`` may hold (``source`` is provenance, free text).
CUSTOM_TASK_KEYS = ("task", "labels", "text_fields", "label_field", "label_names", "source")
#: Keys that make a ``task.json`` describe a custom task.
_CUSTOM_MARKERS = ("labels", "text_fields")

_CUSTOM_SPECS: dict[str, TaskSpec] = {}


def is_custom_description(meta: Mapping[str, Any]) -> bool:
    """Whether a parsed ``task.json`` describes a custom task (it has labels/text fields)."""
    return any(key in meta for key in _CUSTOM_MARKERS)


def custom_task_spec(meta: Mapping[str, Any]) -> TaskSpec:
    """Build a custom task's spec from its parsed ``task.json``.

    Args:
        meta: ``{"task", "labels", "text_fields", "label_field"?, "label_names"?}``.

    Returns:
        The spec (``custom=True``).

    Raises:
        FieldError: Naming the field of ``task.json`` that is missing or malformed.
    """
    unknown = sorted(set(meta) - set(CUSTOM_TASK_KEYS))
    if unknown:
        raise FieldError("<keys>", f"only the keys {list(CUSTOM_TASK_KEYS)}", str(unknown))
    name = _field(meta, "task", str)
    try:
        name = normalize_task(name)
    except ValueError as exc:
        raise FieldError("task", "a task name", str(exc)) from None
    if is_builtin_task(name):
        raise FieldError(
            "task",
            f"a name that is not a built-in task ({', '.join(ALL_TASKS)}); a built-in task's "
            'task.json holds only {"task": ..., "source": ...}',
            repr(name),
        )
    labels = _field(meta, "labels", list)
    if len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise FieldError("labels", "a list of at least 2 non-empty strings", describe_value(labels))
    if len(set(labels)) != len(labels):
        raise FieldError("labels", "distinct label strings", describe_value(labels))
    fields = meta.get("text_fields")
    if (
        not isinstance(fields, list)
        or not 1 <= len(fields) <= 2
        or not all(isinstance(f, str) and f for f in fields)
        or len(set(fields)) != len(fields)
    ):
        raise FieldError(
            "text_fields",
            "a list of one or two distinct field names (two for a text pair)",
            describe_value(fields),
        )
    label_field = meta.get("label_field", "label")
    if not isinstance(label_field, str) or not label_field or label_field in fields:
        raise FieldError(
            "label_field", "a field name other than the text fields", describe_value(label_field)
        )
    names = meta.get("label_names", {})
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and k in labels and isinstance(v, str) for k, v in names.items()
    ):
        raise FieldError(
            "label_names", "an object mapping labels to display names", describe_value(names)
        )
    return TaskSpec(
        name=name,
        text_a=fields[0],
        text_b=fields[1] if len(fields) == 2 else None,
        labels=tuple(labels),
        is_pair=len(fields) == 2,
        label_names=dict(names),
        text_fields=tuple(fields),
        label_field=label_field,
        custom=True,
    )


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make a custom task known to :func:`task_spec` by name in this process.

    Raises:
        UserError: If another description of the same name is already registered.
    """
    if not spec.custom:
        return TASK_SPECS[spec.name]
    known = _CUSTOM_SPECS.get(spec.name)
    if known is not None and known != spec:
        raise UserError(
            f"custom task {spec.name!r} is described twice, differently ({known} vs {spec}); "
            "give each task directory its own task name"
        )
    _CUSTOM_SPECS[spec.name] = spec
    return spec


def task_spec(task: str | TaskSpec, task_dir: str | os.PathLike[str] | None = None) -> TaskSpec:
    """The one lookup of a task's spec.

    Args:
        task: A spec (returned as is) or a task name in any case.
        task_dir: A task directory whose ``task.json`` describes ``task`` (a custom task not
            loaded yet in this process).

    Returns:
        The built-in spec, or the custom task's.

    Raises:
        UserError: If the task is neither built in nor described (names where it looked).
    """
    if isinstance(task, TaskSpec):
        return task
    name = normalize_task(task)
    if name in TASK_SPECS:
        return TASK_SPECS[name]
    if name in _CUSTOM_SPECS:
        return _CUSTOM_SPECS[name]
    if task_dir is not None:
        from ppminilm.data.taskdir import read_task_meta

        spec = read_task_meta(Path(task_dir))
        if spec.name == name:
            return spec
    raise UserError(
        f"unknown task {name!r}: not one of {', '.join(ALL_TASKS)}, and no task directory "
        "describing it (a task.json with labels and text_fields) has been read"
        + (f" (looked in {task_dir})" if task_dir is not None else "")
    )


def describe_value(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened to ``limit`` characters for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
    """JSON name of a value's type (``string``, ``integer``, ...) for error messages."""
    return {
        str: "string",
        int: "integer",
        list: "list",
        dict: "object",
        bool: "boolean",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _field(example: Mapping[str, Any], name: str, kind: type, prefix: str = "") -> Any:
    """Return ``example[name]`` checked to be of ``kind`` (raises FieldError)."""
    label = f"{prefix}{name}"
    want = {str: "a string", int: "an integer", list: "a list", dict: "an object"}[kind]
    if name not in example:
        raise FieldError(label, want, "nothing (the field is missing)")
    value = example[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise FieldError(label, want, f"{type_name(value)} {describe_value(value)}")
    return value


def _mark_wsc(example: Mapping[str, Any]) -> str:
    text = _field(example, "text", str)
    target = _field(example, "target", dict)
    spans = []
    for span, (left, right) in (("span1", ("_", "_")), ("span2", ("[", "]"))):
        start = _field(target, f"{span}_index", int, "target.")
        word = _field(target, f"{span}_text", str, "target.")
        if not word or text[start : start + len(word)] != word:
            raise FieldError(
                f"target.{span}_index",
                f"the position of {span}_text {word!r} in text",
                f"{start} (text there is {text[start : start + len(word)]!r})",
            )
        spans.append((start, word, left, right))
    # Insert into the later span first so the earlier span's index stays valid.
    for start, word, left, right in sorted(spans, key=lambda s: s[0], reverse=True):
        end = start + len(word)
        text = text[:start] + left + text[start:end] + right + text[end:]
    return text


def example_to_text_pair(
    example: Mapping[str, Any], task: str | TaskSpec
) -> tuple[str, str | None]:
    """Map one example to the (text_a, text_b) the model reads.

    TNEWS/IFLYTEK/local_reviews: ``sentence``; AFQMC/CMNLI/OCNLI/local_pairs: ``sentence1``,
    ``sentence2``; CSL: ``" ".join(keyword)`` and ``abst``; CLUEWSC2020: ``text`` with
    ``target.span1`` wrapped as ``_span1_`` and ``target.span2`` as ``[span2]``; a custom
    task: its ``text_fields`` (strings).

    Args:
        example: One JSON record in the task's field names.
        task: Task name (any case) or spec (see :func:`task_spec`).

    Returns:
        ``(text_a, text_b)``; ``text_b`` is None for single-text tasks.

    Raises:
        FieldError: (a ``ValueError``) naming the missing or malformed field.
        UserError: On an unknown task.
    """
    spec = task_spec(task)
    if spec.custom:
        first = _field(example, spec.text_fields[0], str)
        return first, (_field(example, spec.text_fields[1], str) if spec.is_pair else None)
    task = spec.name
    if task in ("tnews", "iflytek", "local_reviews"):
        return _field(example, "sentence", str), None
    if task in ("afqmc", "cmnli", "ocnli", "local_pairs"):
        return _field(example, "sentence1", str), _field(example, "sentence2", str)
    if task == "csl":
        keywords = _field(example, "keyword", list)
        for i, word in enumerate(keywords):
            if not isinstance(word, str):
                raise FieldError(
                    f"keyword[{i}]", "a string", f"{type_name(word)} {describe_value(word)}"
                )
        return " ".join(keywords), _field(example, "abst", str)
    return _mark_wsc(example), None  # cluewsc2020
