"""Fault cases of task data, CLUE files and vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

from faultmatrix.common import USER, _finetune, _write
from faultmatrix.fixtures import Fixtures
from faultmatrix.runner import Call, case

# --------------------------------------------------------------------------- task data


def _task_with(fx: Fixtures, root: Path, name: str, data: str | bytes) -> Path:
    task = fx.copy("task", root / "task")
    _write(task / name, data)
    return task


def _lines(fx: Fixtures, split: str) -> list[str]:
    return (fx.get("task") / f"{split}.json").read_text(encoding="utf-8").splitlines()


@case("data")
def task_dir_missing(fx: Fixtures, root: Path) -> Call:
    missing = root / "no-such-task"
    return Call(_finetune(fx, root, task=missing), [str(missing)], USER)


@case("data")
def task_dir_is_a_file(fx: Fixtures, root: Path) -> Call:
    path = _write(root / "task.txt", "not a directory")
    return Call(_finetune(fx, root, task=path), [str(path)], USER)


@case("data")
def train_bad_json_line(fx: Fixtures, root: Path) -> Call:
    lines = _lines(fx, "train")
    lines[2] = lines[2][:-1]
    task = _task_with(fx, root, "train.json", "\n".join(lines) + "\n")
    return Call(_finetune(fx, root, task=task), [f"{task / 'train.json'}:3"], USER)


@case("data")
def train_not_utf8(fx: Fixtures, root: Path) -> Call:
    lines = [x.encode() for x in _lines(fx, "train")]
    lines[1] = lines[1].replace("，".encode(), b"\xc3\x28")
    task = _task_with(fx, root, "train.json", b"\n".join(lines) + b"\n")
    return Call(_finetune(fx, root, task=task), [f"{task / 'train.json'}:2", "UTF-8"], USER)


@case("data")
def train_unknown_label(fx: Fixtures, root: Path) -> Call:
    lines = _lines(fx, "train")
    record = json.loads(lines[3])
    record["label"] = "7"
    lines[3] = json.dumps(record, ensure_ascii=False)
    task = _task_with(fx, root, "train.json", "\n".join(lines) + "\n")
    return Call(_finetune(fx, root, task=task), [f"{task / 'train.json'}:4", "label"], USER)


@case("data")
def train_missing_text_field(fx: Fixtures, root: Path) -> Call:
    lines = _lines(fx, "train")
    lines[0] = json.dumps({"id": 0, "label": "1"})
    task = _task_with(fx, root, "train.json", "\n".join(lines) + "\n")
    return Call(_finetune(fx, root, task=task), [f"{task / 'train.json'}:1", "sentence"], USER)


@case("data")
def labels_file_wrong(fx: Fixtures, root: Path) -> Call:
    task = _task_with(fx, root, "labels.json", '["neg", "pos"]\n')
    return Call(_finetune(fx, root, task=task), [str(task / "labels.json")], USER)


@case("data")
def labels_file_not_utf8(fx: Fixtures, root: Path) -> Call:
    task = _task_with(fx, root, "labels.json", b'["0",\n "\xff"]\n')
    return Call(_finetune(fx, root, task=task), [f"{task / 'labels.json'}:2"], USER)


@case("data")
def task_json_missing(fx: Fixtures, root: Path) -> Call:
    task = fx.copy("task", root / "task")
    (task / "task.json").unlink()
    argv = ["data", "validate", str(task)]
    return Call(argv, [str(task / "task.json")], USER)


@case("data")
def train_split_empty(fx: Fixtures, root: Path) -> Call:
    task = _task_with(fx, root, "train.json", "\n\n")
    return Call(_finetune(fx, root, task=task), [str(task / "train.json"), "empty"], USER)


@case("data")
def train_duplicate_id(fx: Fixtures, root: Path) -> Call:
    lines = _lines(fx, "train")
    record = json.loads(lines[5])
    record["id"] = 0
    lines[5] = json.dumps(record, ensure_ascii=False)
    task = _task_with(fx, root, "train.json", "\n".join(lines) + "\n")
    return Call(["data", "validate", str(task)], [f"{task / 'train.json'}:6", "id"], USER)


@case("data")
def dev_example_also_in_train(fx: Fixtures, root: Path) -> Call:
    dev = _lines(fx, "dev")
    dev[1] = _lines(fx, "train")[4]
    task = _task_with(fx, root, "dev.json", "\n".join(dev) + "\n")
    return Call(["data", "validate", str(task)], [str(task / "dev.json")], USER)


@case("data")
def test_split_unknown_label(fx: Fixtures, root: Path) -> Call:
    lines = _lines(fx, "test")
    record = json.loads(lines[0])
    record["label"] = "positive"
    lines[0] = json.dumps(record, ensure_ascii=False)
    task = _task_with(fx, root, "test.json", "\n".join(lines) + "\n")
    return Call(["data", "validate", str(task)], [f"{task / 'test.json'}:1", "label"], USER)


@case("data")
def validate_file_without_task(fx: Fixtures, root: Path) -> Call:
    task = fx.copy("task", root / "task")
    return Call(["data", "validate", str(task / "train.json")], ["--task"], USER)


@case("data")
def task_name_mismatch(fx: Fixtures, root: Path) -> Call:
    return Call(_finetune(fx, root, "--task", "local_pairs"), ["local_pairs", "task"], USER)


@case("data")
def clue_local_files_missing(fx: Fixtures, root: Path) -> Call:
    home = root / "clue-home"
    home.mkdir()
    argv = [
        "data", "download-clue", "--task", "tnews", "--out", str(root / "tnews"),
        "--data-home", str(home),
    ]  # fmt: skip
    return Call(argv, [str(home / "tnews_public")], 3)


@case("data")
def clue_local_file_bad_line(fx: Fixtures, root: Path) -> Call:
    public = root / "clue-home" / "tnews_public"
    good = '{"label": "100", "label_desc": "news_story", "sentence": "一个故事", "keywords": ""}'
    _write(public / "train.json", good + "\n" + good.replace("一个", "两个")[:-2] + "\n")
    _write(public / "dev.json", good.replace("一个", "三个") + "\n")
    _write(public / "test.json", '{"id": 0, "sentence": "四个故事", "keywords": ""}\n')
    argv = [
        "data", "download-clue", "--task", "tnews", "--out", str(root / "tnews"),
        "--data-home", str(root / "clue-home"),
    ]  # fmt: skip
    return Call(argv, [f"{public / 'train.json'}:2"], USER)


@case("data")
def clue_unknown_task(fx: Fixtures, root: Path) -> Call:
    argv = ["data", "download-clue", "--task", "tnewz", "--out", str(root / "tnewz")]
    return Call(argv, ["tnewz"], USER)


@case("data")
def build_local_out_is_a_file(fx: Fixtures, root: Path) -> Call:
    out = _write(root / "data", "a file")
    return Call(["data", "build-local", "--out", str(out)], [str(out)], USER)


@case("data")
def build_local_out_holds_user_files(fx: Fixtures, root: Path) -> Call:
    out = root / "data"
    _write(out / "notes.txt", "my notes")
    return Call(["data", "build-local", "--out", str(out)], [str(out)], USER)


# --------------------------------------------------------------------------- vocabularies


def _vocab_case(fx: Fixtures, root: Path, data: str | bytes, names: list[str]) -> Call:
    argv = _finetune(fx, root)
    vocab = Path(argv[argv.index("--tokenizer-dir") + 1])
    _write(vocab / "vocab.txt", data)
    return Call(argv, [str(vocab / "vocab.txt"), *names], USER)


@case("vocab")
def vocab_empty(fx: Fixtures, root: Path) -> Call:
    return _vocab_case(fx, root, "", ["empty"])


@case("vocab")
def vocab_duplicate_lines(fx: Fixtures, root: Path) -> Call:
    lines = (fx.get("vocab") / "vocab.txt").read_text(encoding="utf-8").splitlines()
    lines.insert(12, lines[8])
    return _vocab_case(fx, root, "\n".join(lines) + "\n", [":13", lines[8]])


@case("vocab")
def vocab_not_utf8(fx: Fixtures, root: Path) -> Call:
    data = (fx.get("vocab") / "vocab.txt").read_bytes().replace("好".encode(), b"\xe5\xa5", 1)
    line = data[: data.index(b"\xe5\xa5")].count(b"\n") + 1
    return _vocab_case(fx, root, data, [f":{line}", "UTF-8"])


@case("vocab")
def vocab_without_special_tokens(fx: Fixtures, root: Path) -> Call:
    lines = (fx.get("vocab") / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return _vocab_case(fx, root, "\n".join(x for x in lines if x != "[UNK]") + "\n", ["[UNK]"])


@case("vocab")
def tokenizer_dir_without_vocab(fx: Fixtures, root: Path) -> Call:
    argv = _finetune(fx, root)
    vocab = Path(argv[argv.index("--tokenizer-dir") + 1])
    (vocab / "vocab.txt").unlink()
    return Call(argv, [str(vocab), "vocab.txt"], USER)
