"""The task directory: the ``Dataset`` artifact every fine-tuning, pruning and quantization
stage reads, its validation (``file:line:field`` errors), loading and all-or-nothing writing.

A task directory holds::

    train.json   labelled JSON lines in the task's own field names; fine-tuning trains on all
                 of it, and the calibration / head-importance samples are drawn from it
    dev.json     labelled; the reported dev set, on which every selection is made
    test.json    optional; where labelled (the local tasks) it is scored, never selected on;
                 CLUE's public test split has no labels
    labels.json  a built-in task's label strings (position = label id)
    task.json    {"task": name, "source": ...}; or a custom task's description (labels,
                 text_fields, label_field: :mod:`ppminilm.data.tasks`)
    calib.json   older layout only: still read and validated, no longer used

The split policy, decided once: selections (grid point, PTQ candidate, width) see dev only;
calibration and importance samples come from train (calibration reads inputs only); a
labelled test split is seen by nothing but the final scoring. No two splits share an example
(same text pair). Real CMNLI/OCNLI files contain lines labelled ``"-"`` (no annotator
majority); the reader skips them and logs how many.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import normalize_task
from ppminilm.data.records import (
    DataError,
    label_to_id,
    read_split,
    read_split_lines,
    validate_records,
)
from ppminilm.data.tasks import (
    TASK_SPECS,
    FieldError,
    TaskSpec,
    custom_task_spec,
    describe_value,
    example_to_text_pair,
    is_custom_description,
    register_task,
    task_spec,
)
from ppminilm.errors import UserError
from ppminilm.io import read_json_file, staged_dir, write_json

logger = logging.getLogger(__name__)

#: Splits of a task directory, in the order they are checked and written.
SPLITS = ("train", "dev", "test")
#: Splits a task directory may lack.
OPTIONAL_SPLITS = ("test",)
#: A split of the older layout (held out of train for calibration), read but not used.
LEGACY_SPLITS = ("calib",)
#: File names of a task directory (splits are ``<split>.json``).
LABELS_FILE = "labels.json"
TASK_FILE = "task.json"
#: Splits that must carry labels.
LABELLED_SPLITS = ("train", "dev", "calib")

__all__ = [
    "LABELLED_SPLITS",
    "LABELS_FILE",
    "LEGACY_SPLITS",
    "OPTIONAL_SPLITS",
    "SPLITS",
    "TASK_FILE",
    "DataError",
    "TaskData",
    "label_to_id",
    "load_task_dir",
    "read_split",
    "read_task_meta",
    "sample_examples",
    "write_task_dir",
]


def sample_examples(
    examples: Sequence[Mapping[str, Any]], n: int, seed: int
) -> list[Mapping[str, Any]]:
    """A deterministic random sample of ``n`` examples (all of them, shuffled, if fewer).

    The sample is in shuffled order, so its first ``k`` examples are themselves a random
    sample: a calibration of 4 examples sees the first 4 of the 8 a calibration of 8 sees.

    Args:
        examples: The split to draw from (train, for calibration and importance).
        n: Sample size (> 0).
        seed: Seed of the draw.
    """
    if n <= 0:
        raise ValueError(f"sample size {n} must be > 0")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    return [examples[i] for i in order[:n]]


@dataclasses.dataclass
class TaskData:
    """One task directory, loaded and validated.

    Attributes:
        task: Canonical task name.
        labels: Label strings in id order (``labels.json``, or a custom task's ``task.json``).
        train: Training examples.
        dev: Reported dev examples.
        test: Test examples (labels optional; empty when the directory has no test split).
        calib: An older layout's ``calib.json`` (empty otherwise); not used by any stage.
        source: Where the data came from (``task.json``).
    """

    task: str
    labels: list[str]
    train: list[dict[str, Any]]
    dev: list[dict[str, Any]]
    test: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    calib: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    source: str = ""

    @property
    def spec(self) -> TaskSpec:
        """The task's spec (built in, or the custom task's, registered when it was loaded)."""
        return task_spec(self.task)

    @property
    def label_ids(self) -> dict[str, int]:
        """``{label: id}`` in ``labels`` order."""
        return label_to_id(self.labels)

    def split(self, name: str) -> list[dict[str, Any]]:
        """Return a split by name (``train``, ``dev``, ``test``; ``calib`` of old layouts)."""
        if name not in SPLITS + LEGACY_SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def counts(self) -> dict[str, int]:
        """Examples per split (``calib`` only when an older layout had one)."""
        names = SPLITS + (LEGACY_SPLITS if self.calib else ())
        return {name: len(self.split(name)) for name in names}

    @property
    def test_labelled(self) -> bool:
        """Whether the test split exists and every example carries a label."""
        return bool(self.test) and all("label" in e for e in self.test)

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
                f"labels {self.labels}"
            )


def _read_json(path: Path, field: str, expected: str) -> Any:
    if not path.is_file():
        raise DataError(path, None, field, expected, "no such file")
    return read_json_file(path, DataError)


def _check_labels(labels: Any, spec: TaskSpec, where: str) -> list[str]:
    if (
        not isinstance(labels, list)
        or not all(isinstance(x, str) for x in labels)
        or sorted(labels) != sorted(spec.labels)
    ):
        raise DataError(
            where,
            1,
            "<labels>",
            f"a JSON list holding exactly the {spec.name} labels {list(spec.labels)}",
            describe_value(labels, 120),
        )
    return list(labels)


def _check_disjoint(
    splits: Mapping[str, Sequence[tuple[int, Mapping[str, Any]]]],
    spec: TaskSpec,
    names: Mapping[str, str],
) -> None:
    """Raise DataError if two splits hold the same text pair.

    ``splits`` maps split -> ``(line, example)`` pairs; ``names`` maps split -> file.
    """
    owner: dict[tuple[str, str | None], tuple[str, int]] = {}
    for split in SPLITS + LEGACY_SPLITS:
        for line, example in splits.get(split, ()):
            key = example_to_text_pair(example, spec)
            first = owner.setdefault(key, (split, line))
            if first[0] != split:
                raise DataError(
                    names[split],
                    line,
                    "text",
                    f"an example not already in {names[first[0]]}",
                    f"the same text as its line {first[1]}",
                )


_DIR_EXPECTED = (
    "a task directory (train.json, dev.json, optional test.json, task.json; labels.json for "
    "a built-in task)"
)


def read_task_meta(root: Path) -> TaskSpec:
    """Read a task directory's ``task.json``: the built-in task it names, or a custom task.

    A custom task's spec is registered (:func:`ppminilm.data.tasks.register_task`), so later
    lookups by name in this process find it.

    Raises:
        DataError: Naming ``task.json`` and the field that is missing or malformed.
    """
    path = root / TASK_FILE
    meta = _read_json(path, "task", 'a JSON object {"task": name, ...}')
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise DataError(path, 1, "task", "a task name string", describe_value(meta))
    try:
        if is_custom_description(meta):
            return register_task(custom_task_spec(meta))
        name = normalize_task(meta["task"])
    except FieldError as exc:
        raise DataError(path, 1, exc.field, exc.expected, exc.got) from None
    except ValueError as exc:
        raise DataError(path, 1, "task", str(exc)) from None
    if name not in TASK_SPECS:
        raise DataError(
            path,
            1,
            "labels",
            f'a custom task\'s description ({name!r} is not a built-in task): "labels" '
            '(list of strings), "text_fields" (one or two field names), optional '
            '"label_field"',
            "nothing (the field is missing)",
        )
    return TASK_SPECS[name]


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
        raise DataError(root, None, "<dir>", _DIR_EXPECTED, "no such directory")
    spec = read_task_meta(root)
    if task is not None and normalize_task(task) != spec.name:
        raise DataError(
            root / TASK_FILE, 1, "task", f"task {normalize_task(task)!r}", repr(spec.name)
        )
    labels_path = root / LABELS_FILE
    if spec.custom and not labels_path.is_file():
        labels = list(spec.labels)
    else:
        labels = _check_labels(
            _read_json(labels_path, "<labels>", "a JSON list of label strings"),
            spec,
            str(labels_path),
        )
        if spec.custom and labels != list(spec.labels):
            raise DataError(
                labels_path, 1, "<labels>", f"the labels of {TASK_FILE} in its order", str(labels)
            )
    lines = {
        name: read_split_lines(root / f"{name}.json", spec, name in LABELLED_SPLITS)
        for name in SPLITS + LEGACY_SPLITS
        if name not in OPTIONAL_SPLITS + LEGACY_SPLITS or (root / f"{name}.json").is_file()
    }
    _check_disjoint(lines, spec, {s: str(root / f"{s}.json") for s in SPLITS + LEGACY_SPLITS})
    if "calib" in lines:
        logger.info(
            "%s: calib.json (older layout) read but not used; calibration and importance "
            "samples come from train",
            root,
        )
    splits = {name: [record for _, record in found] for name, found in lines.items()}
    meta = read_json_file(root / TASK_FILE, DataError)
    return TaskData(task=spec.name, labels=labels, source=str(meta.get("source", "")), **splits)


def write_task_dir(
    path: str | os.PathLike[str],
    task: str,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Sequence[str] | None = None,
    source: str = "",
) -> Path:
    """Validate and write a built-in task's directory atomically (temp dir, then rename).

    Args:
        path: Target directory; replaced if it exists.
        task: A built-in task name (any case).
        splits: ``train`` and ``dev`` example lists, optionally ``test``.
        labels: Label strings in id order; None uses ``TASK_SPECS[task].labels``.
        source: Provenance written to ``task.json``.

    Returns:
        The written directory.

    Raises:
        DataError: If a split is missing, invalid, or shares examples with another (nothing
            is written then).
    """
    spec = task_spec(task)
    root = Path(path)
    labels = list(spec.labels if labels is None else labels)
    _check_labels(labels, spec, "labels")
    required = [s for s in SPLITS if s not in OPTIONAL_SPLITS]
    if any(s not in splits for s in required) or set(splits) - set(SPLITS):
        raise DataError(
            "splits",
            None,
            "<splits>",
            f"the splits {required} (optionally {list(OPTIONAL_SPLITS)})",
            f"{sorted(splits)}",
        )
    clean = {
        name: validate_records(
            enumerate(splits[name], start=1),
            f"{name}.json (to write)",
            spec,
            require_labels=name in LABELLED_SPLITS,
        )
        for name in SPLITS
        if name in splits
    }
    _check_disjoint(clean, spec, {s: f"{s}.json (to write)" for s in SPLITS})
    with staged_dir(root, replace=True, kind="task") as tmp:
        for name, records in clean.items():
            with (tmp / f"{name}.json").open("w", encoding="utf-8") as handle:
                for _, example in records:
                    handle.write(json.dumps(example, ensure_ascii=False) + "\n")
        write_json(tmp / LABELS_FILE, labels)
        write_json(tmp / TASK_FILE, {"task": spec.name, "source": source})
    logger.info("wrote %s task dir %s: %s", spec.name, root, {n: len(r) for n, r in clean.items()})
    return root
