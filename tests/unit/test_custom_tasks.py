"""Custom tasks: a task.json describes a task that is not in CLUE; it validates like CLUE's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ppminilm.config import FinetuneConfig, resolve
from ppminilm.data import DataError, example_to_text_pair, load_task_dir, task_spec
from ppminilm.errors import UserError

INTENTS = ["buy", "sell", "other"]


def _lines(path: Path, rows: list[Any]) -> None:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )


def custom_task_dir(
    root: Path,
    name: str = "my_intents",
    *,
    pair: bool = False,
    n_train: int = 12,
    test: bool = True,
    meta: dict[str, Any] | None = None,
) -> Path:
    """A custom task directory: ``query`` (+ ``context``) texts, labels under ``intent``."""
    root.mkdir(parents=True, exist_ok=True)
    fields = ["query", "context"] if pair else ["query"]
    description = {
        "task": name,
        "labels": INTENTS,
        "text_fields": fields,
        "label_field": "intent",
        **(meta or {}),
    }
    (root / "task.json").write_text(json.dumps(description), encoding="utf-8")

    def rows(start: int, n: int, labelled: bool = True) -> list[dict[str, Any]]:
        out = []
        for i in range(start, start + n):
            row: dict[str, Any] = {"query": f"我想问第{i}个问题", "id": i}
            if pair:
                row["context"] = f"上下文{i}"
            if labelled:
                row["intent"] = INTENTS[i % 3]
            out.append(row)
        return out

    _lines(root / "train.json", rows(0, n_train))
    _lines(root / "dev.json", rows(100, 6))
    if test:
        _lines(root / "test.json", rows(200, 6))
    return root


def test_custom_task_loads_and_maps_its_fields(tmp_path: Path) -> None:
    data = load_task_dir(custom_task_dir(tmp_path / "t", pair=True))
    assert data.task == "my_intents" and data.labels == INTENTS
    assert data.counts() == {"train": 12, "dev": 6, "test": 6}
    assert data.test_labelled
    # In memory the label is the string field `label`, whatever the file calls it.
    assert data.train[0]["label"] == "buy" and data.train[0]["intent"] == "buy"
    spec = task_spec("MY_INTENTS")  # registered when the directory was read
    assert spec.custom and spec.is_pair and spec.label_field == "intent"
    assert example_to_text_pair(data.dev[0], "my_intents") == ("我想问第100个问题", "上下文100")
    # Fine-tuning configs accept the name; its epochs default to the custom-task value.
    assert resolve(FinetuneConfig, "cluster", task="my_intents").epochs == 3


def test_custom_task_integer_labels_and_default_label_field(tmp_path: Path) -> None:
    root = tmp_path / "nums"
    root.mkdir()
    (root / "task.json").write_text(
        json.dumps({"task": "binary_x", "labels": ["0", "1"], "text_fields": ["text"]})
    )
    _lines(root / "train.json", [{"text": f"t{i}", "label": i % 2} for i in range(4)])
    _lines(root / "dev.json", [{"text": f"d{i}", "label": str(i % 2)} for i in range(2)])
    data = load_task_dir(root)
    assert [e["label"] for e in data.train] == ["0", "1", "0", "1"]
    assert data.counts()["test"] == 0 and not data.test_labelled


@pytest.mark.parametrize(
    ("meta", "field", "words"),
    [
        ({"labels": ["only"]}, "labels", "at least 2"),
        ({"labels": ["a", "a"]}, "labels", "distinct"),
        ({"text_fields": []}, "text_fields", "one or two"),
        ({"text_fields": ["a", "b", "c"]}, "text_fields", "one or two"),
        ({"label_field": "query"}, "label_field", "other than the text fields"),
        ({"task": "tnews"}, "task", "not a built-in task"),
        ({"task": "bad name"}, "task", "not valid"),
        ({"colour": "red"}, "<keys>", "only the keys"),
        ({"label_names": {"nope": "x"}}, "label_names", "mapping labels"),
    ],
)
def test_bad_task_json_names_file_and_field(
    tmp_path: Path, meta: dict[str, Any], field: str, words: str
) -> None:
    root = custom_task_dir(tmp_path / "t", name="intents_bad", meta=meta)
    with pytest.raises(DataError) as info:
        load_task_dir(root)
    message = str(info.value)
    assert f"{root / 'task.json'}:1: field '{field}'" in message and words in message


def test_unknown_name_without_a_description_says_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "task.json").write_text('{"task": "mystery"}')
    with pytest.raises(DataError, match=r"task.json:1: field 'labels'.*custom task's description"):
        load_task_dir(root)
    with pytest.raises(UserError, match="unknown task 'mystery'"):
        task_spec("mystery")


def test_custom_split_errors_name_file_line_and_the_task_fields(tmp_path: Path) -> None:
    root = custom_task_dir(tmp_path / "t", name="intents_lines")
    _lines(root / "train.json", [{"query": "a", "intent": "buy"}, {"query": "b", "intent": "hold"}])
    with pytest.raises(DataError, match=r"train.json:2: field 'intent': expected one of"):
        load_task_dir(root)
    _lines(root / "train.json", [{"query": "a", "intent": "buy"}, {"intent": "buy"}])
    with pytest.raises(DataError, match=r"train.json:2: field 'query': expected a string"):
        load_task_dir(root)
    _lines(root / "train.json", [{"query": "a", "intent": True}])
    with pytest.raises(DataError, match=r"train.json:1: field 'intent': expected a string or"):
        load_task_dir(root)
    _lines(root / "train.json", [{"query": "a"}])
    with pytest.raises(DataError, match=r"train.json:1: field 'intent'.*missing"):
        load_task_dir(root)
    _lines(root / "train.json", [{"query": "我想问第100个问题", "intent": "buy"}])  # also in dev
    with pytest.raises(DataError, match=r"dev.json:1: field 'text'"):
        load_task_dir(root)


def test_labels_json_beside_a_custom_task_must_agree(tmp_path: Path) -> None:
    root = custom_task_dir(tmp_path / "t", name="intents_labels")
    (root / "labels.json").write_text(json.dumps(INTENTS))
    assert load_task_dir(root).labels == INTENTS
    (root / "labels.json").write_text(json.dumps(["sell", "buy", "other"]))
    with pytest.raises(DataError, match=r"labels of task\.json in its order"):
        load_task_dir(root)


def test_two_descriptions_of_one_name_are_refused(tmp_path: Path) -> None:
    load_task_dir(custom_task_dir(tmp_path / "a", name="intents_twice"))
    other = custom_task_dir(tmp_path / "b", name="intents_twice", meta={"labels": ["x", "y"]})
    with pytest.raises(UserError, match="described twice"):
        load_task_dir(other)


def test_cli_validates_a_custom_task_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ppminilm.cli import main

    root = custom_task_dir(tmp_path / "t", name="intents_cli")
    assert main(["data", "validate", str(root)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {
        "task": "intents_cli",
        "labels": INTENTS,
        "counts": {"train": 12, "dev": 6, "test": 6},
    }
