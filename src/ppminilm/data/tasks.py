"""Task schema: what each classification task looks like and how an example becomes text.

:class:`TaskSpec`, :data:`TASK_SPECS` and :func:`example_to_text_pair` cover the seven CLUE
tasks and the two local tasks built in the same format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ppminilm.config import normalize_task
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
    """

    name: str
    text_a: str
    text_b: str | None
    labels: tuple[str, ...]
    is_pair: bool
    label_names: Mapping[str, str] = dataclasses.field(default_factory=dict)

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


def example_to_text_pair(example: Mapping[str, Any], task: str) -> tuple[str, str | None]:
    """Map one example to the (text_a, text_b) the model reads.

    TNEWS/IFLYTEK/local_reviews: ``sentence``; AFQMC/CMNLI/OCNLI/local_pairs: ``sentence1``,
    ``sentence2``; CSL: ``" ".join(keyword)`` and ``abst``; CLUEWSC2020: ``text`` with
    ``target.span1`` wrapped as ``_span1_`` and ``target.span2`` as ``[span2]``.

    Args:
        example: One JSON record in the task's field names.
        task: Task name (any case).

    Returns:
        ``(text_a, text_b)``; ``text_b`` is None for single-text tasks.

    Raises:
        FieldError: (a ``ValueError``) naming the missing or malformed field.
        ValueError: On an unknown task.
    """
    task = normalize_task(task)
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
