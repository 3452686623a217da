"""Task data: CLUE mapping, split validation, task directories, the paddlenlp CLUE path, CLI."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest

from ppminilm.data import (
    SPLITS,
    TASK_SPECS,
    DataError,
    TaskSpec,
    example_to_text_pair,
    label_to_id,
    load_task_dir,
    read_split,
    write_task_dir,
)
from ppminilm.io import STAGED_MARKER

_WSC = "在这个时候，清风仰躺在床上，双手交叉着放在脑后，轻声说道：“真舒服，它让我很安心。”"
# One record per CLUE task, in the real files' field names (values shortened).
CLUE_RECORDS: dict[str, dict[str, Any]] = {
    "afqmc": {"sentence1": "花呗如何还款", "sentence2": "花呗怎么还钱", "label": "1"},
    "tnews": {
        "label": "102",
        "label_desc": "news_entertainment",
        "sentence": "江疏影甜甜圈自拍",
        "keywords": "江疏影,美少女",
    },
    "iflytek": {"label": "11", "label_des": "薅羊毛", "sentence": "一款赚钱的应用"},
    "cmnli": {
        "sentence1": "新的权利已经足够好了",
        "sentence2": "每个人都很喜欢最新的福利",
        "label": "neutral",
    },
    "ocnli": {
        "level": "medium",
        "sentence1": "一月份跟二月份肯定有一个月份有",
        "label": "contradiction",
        "sentence2": "肯定有一个月份有",
        "genre": "tv",
        "id": 0,
    },
    "cluewsc2020": {
        "target": {
            "span2_index": _WSC.index("它"),
            "span1_index": _WSC.index("床"),
            "span1_text": "床",
            "span2_text": "它",
        },
        "idx": 0,
        "label": "false",
        "text": _WSC,
    },
    "csl": {"id": 1, "abst": "针对超声检测的问题", "keyword": ["水声学", "超声检测"], "label": "1"},
}


def _write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )
    return path


def _pair(i: int, label: str = "1") -> dict[str, Any]:
    return {"sentence1": f"句子{i}", "sentence2": f"另一个{i}", "label": label}


def _splits(n: int = 3) -> dict[str, list[dict[str, Any]]]:
    return {
        split: [_pair(k * 10 + i, str(i % 2)) for i in range(n)] for k, split in enumerate(SPLITS)
    }


# ---------------------------------------------------------------- task specs and mapping


def test_task_specs_cover_all_tasks_with_real_label_lists() -> None:
    assert set(TASK_SPECS) == {
        "afqmc",
        "tnews",
        "iflytek",
        "cmnli",
        "ocnli",
        "cluewsc2020",
        "csl",
        "local_reviews",
        "local_pairs",
    }
    assert len(TASK_SPECS["tnews"].labels) == 15
    assert "105" not in TASK_SPECS["tnews"].labels and "111" not in TASK_SPECS["tnews"].labels
    assert TASK_SPECS["iflytek"].labels == tuple(str(i) for i in range(119))
    assert TASK_SPECS["cmnli"].labels == ("contradiction", "entailment", "neutral")
    assert TASK_SPECS["cluewsc2020"].labels == ("true", "false")
    assert isinstance(TASK_SPECS["csl"], TaskSpec) and TASK_SPECS["csl"].is_pair
    assert not TASK_SPECS["local_reviews"].is_pair and TASK_SPECS["local_pairs"].is_pair


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("afqmc", ("花呗如何还款", "花呗怎么还钱")),
        ("TNEWS", ("江疏影甜甜圈自拍", None)),
        ("iflytek", ("一款赚钱的应用", None)),
        ("cmnli", ("新的权利已经足够好了", "每个人都很喜欢最新的福利")),
        ("ocnli", ("一月份跟二月份肯定有一个月份有", "肯定有一个月份有")),
        ("csl", ("水声学 超声检测", "针对超声检测的问题")),
    ],
)
def test_example_to_text_pair_clue(task: str, expected: tuple[str, str | None]) -> None:
    assert example_to_text_pair(CLUE_RECORDS[task.lower()], task) == expected


def test_wsc_marks_both_spans_at_their_indices() -> None:
    text, second = example_to_text_pair(CLUE_RECORDS["cluewsc2020"], "cluewsc2020")
    assert second is None
    assert text.startswith("在这个时候，清风仰躺在_床_上")
    assert "真舒服，[它]让我很安心" in text
    # span2 before span1 in the text: both markers still land on the right characters.
    record = {
        "text": "它说小狗很可爱",
        "target": {"span1_index": 2, "span1_text": "小狗", "span2_index": 0, "span2_text": "它"},
    }
    assert example_to_text_pair(record, "cluewsc2020") == ("[它]说_小狗_很可爱", None)


def test_local_task_mapping() -> None:
    assert example_to_text_pair({"sentence": "好评", "label": "1"}, "local_reviews") == (
        "好评",
        None,
    )
    assert example_to_text_pair(_pair(1), "local_pairs") == ("句子1", "另一个1")


def test_label_to_id() -> None:
    assert label_to_id(["neg", "pos"]) == {"neg": 0, "pos": 1}
    with pytest.raises(ValueError, match="repeat"):
        label_to_id(["a", "a"])


# ---------------------------------------------------------------- read_split validation


@pytest.mark.parametrize(
    ("task", "rows", "line", "field", "words"),
    [
        ("afqmc", [_pair(1), '{"sentence1": "x", "sentence2"', _pair(2)], 2, "<record>", "JSON"),
        ("afqmc", [_pair(1), {"sentence1": "x", "label": "0"}], 2, "sentence2", "missing"),
        ("tnews", [{"sentence": 5, "label": "100"}], 1, "sentence", "integer"),
        ("csl", [{"abst": "a", "keyword": ["k", 3], "label": "0"}], 1, "keyword[1]", "string"),
        (
            "tnews",
            [{"sentence": "x", "label": "100"}, {"sentence": "y", "label": "105"}],
            2,
            "label",
            "'105'",
        ),
        ("afqmc", [_pair(1, "0"), {**_pair(2), "label": 1}], 2, "label", "integer"),
        ("afqmc", [{"sentence1": "a", "sentence2": "b"}], 1, "label", "missing"),
        (
            "ocnli",
            [{**_pair(1, "neutral"), "id": 7}, {**_pair(2, "neutral"), "id": 7}],
            2,
            "id",
            "line 1",
        ),
        (
            "cluewsc2020",
            [
                {
                    "text": "abc",
                    "idx": 0,
                    "label": "true",
                    "target": {
                        "span1_index": 0,
                        "span1_text": "b",
                        "span2_index": 2,
                        "span2_text": "c",
                    },
                }
            ],
            1,
            "target.span1_index",
            "position",
        ),
        ("afqmc", ["[1, 2]"], 1, "<record>", "JSON object"),
    ],
    ids=[
        "malformed-json",
        "missing-field",
        "wrong-type",
        "wrong-type-in-list",
        "unknown-label",
        "label-type",
        "missing-label",
        "duplicate-id",
        "wsc-span-mismatch",
        "not-an-object",
    ],
)
def test_read_split_errors_name_file_line_and_field(
    tmp_path: Path, task: str, rows: list[Any], line: int, field: str, words: str
) -> None:
    path = _write_lines(tmp_path / "train.json", rows)
    with pytest.raises(DataError) as info:
        read_split(path, task)
    message = str(info.value)
    assert f"{path}:{line}:" in message
    assert f"field '{field}'" in message
    assert words in message
    assert (info.value.line, info.value.field) == (line, field)


def test_read_split_empty_split(tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "dev.json", ["", "  "])
    with pytest.raises(DataError, match=rf"{path}:1: field '<file>': expected at least one"):
        read_split(path, "afqmc")


def test_read_split_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_split(tmp_path / "nope.json", "afqmc")


def test_read_split_valid_clue_records_and_unlabelled_test(tmp_path: Path) -> None:
    for task, record in CLUE_RECORDS.items():
        path = _write_lines(tmp_path / f"{task}.json", [record])
        assert read_split(path, task) == [record]
    unlabelled = {k: v for k, v in CLUE_RECORDS["tnews"].items() if k != "label"}
    path = _write_lines(tmp_path / "test.json", [{**unlabelled, "id": 0}])
    assert len(read_split(path, "tnews", require_labels=False)) == 1


def test_read_split_skips_nli_lines_without_majority(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write_lines(
        tmp_path / "dev.json", [_pair(1, "neutral"), _pair(2, "-"), _pair(3, "entailment")]
    )
    with caplog.at_level(logging.INFO, logger="ppminilm.data"):
        examples = read_split(path, "cmnli")
    assert [e["label"] for e in examples] == ["neutral", "entailment"]
    assert "skipped 1" in caplog.text
    with pytest.raises(DataError, match="field 'label'"):
        read_split(path, "afqmc")  # "-" is only tolerated for the NLI tasks


# ---------------------------------------------------------------- task directories


def test_task_dir_roundtrip(tmp_path: Path) -> None:
    splits = _splits()
    splits["test"] = [{k: v for k, v in e.items() if k != "label"} for e in splits["test"]]
    out = write_task_dir(tmp_path / "t", "AFQMC", splits, source="unit")
    assert sorted(p.name for p in out.iterdir() if p.name != STAGED_MARKER) == [
        "dev.json",
        "labels.json",
        "task.json",
        "test.json",
        "train.json",
    ]
    data = load_task_dir(out)
    assert data.task == "afqmc" and data.labels == ["0", "1"] and data.source == "unit"
    assert data.counts() == {s: 3 for s in SPLITS}
    assert data.train == splits["train"] and data.test == splits["test"]
    assert data.label_ids == {"0": 0, "1": 1}
    assert load_task_dir(out, task="afqmc").dev == splits["dev"]
    with pytest.raises(DataError, match=r"task\.json:1: field 'task'"):
        load_task_dir(out, task="tnews")


def test_task_dir_rejects_shared_examples(tmp_path: Path) -> None:
    splits = _splits()
    splits["dev"].append(dict(splits["train"][1]))
    with pytest.raises(DataError, match=r"dev.json \(to write\):4: field 'text'"):
        write_task_dir(tmp_path / "t", "afqmc", splits)
    assert not (tmp_path / "t").exists()
    # The same check on read, with real file lines.
    good = write_task_dir(tmp_path / "t", "afqmc", _splits())
    with (good / "test.json").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(_splits()["train"][0], ensure_ascii=False) + "\n")
    with pytest.raises(DataError) as info:
        load_task_dir(good)
    assert f"{good / 'test.json'}:4: field 'text'" in str(info.value)
    assert "train.json" in str(info.value)


def test_old_layout_calib_json_is_read_but_no_longer_needed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = write_task_dir(tmp_path / "t", "afqmc", _splits())
    _write_lines(old / "calib.json", [_pair(90, "1"), _pair(91, "0")])
    with caplog.at_level(logging.INFO):
        data = load_task_dir(old)
    assert data.counts() == {"train": 3, "dev": 3, "test": 3, "calib": 2}
    assert "calib.json (older layout) read but not used" in caplog.text
    _write_lines(old / "calib.json", [{"sentence1": "x", "label": "1"}])  # still validated
    with pytest.raises(DataError, match=r"calib.json:1: field 'sentence2'"):
        load_task_dir(old)
    (old / "calib.json").unlink()
    (old / "test.json").unlink()  # test is optional
    assert load_task_dir(old).counts() == {"train": 3, "dev": 3, "test": 0}


def test_sample_examples_is_deterministic_and_nested() -> None:
    from ppminilm.data import sample_examples

    items = [{"i": i} for i in range(50)]
    eight = sample_examples(items, 8, seed=3)
    assert eight == sample_examples(items, 8, seed=3) and len({e["i"] for e in eight}) == 8
    assert sample_examples(items, 4, seed=3) == eight[:4]  # a smaller sample is a prefix
    assert sample_examples(items, 8, seed=4) != eight
    assert len(sample_examples(items, 80, seed=3)) == 50
    with pytest.raises(ValueError, match="must be > 0"):
        sample_examples(items, 0, seed=3)


def test_write_task_dir_is_atomic_and_validates_first(tmp_path: Path) -> None:
    target = write_task_dir(tmp_path / "t", "afqmc", _splits(2))
    bad = _splits(2)
    bad["train"][1]["label"] = "9"
    with pytest.raises(DataError, match=r"train.json \(to write\):2: field 'label'"):
        write_task_dir(target, "afqmc", bad)
    assert load_task_dir(target).counts()["train"] == 2  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["t"]  # no temp dirs left behind
    write_task_dir(target, "afqmc", _splits(3))  # replace in place
    assert load_task_dir(target).counts()["train"] == 3
    with pytest.raises(DataError, match=r"the splits \['train', 'dev'\]"):
        write_task_dir(tmp_path / "u", "afqmc", {"train": _splits()["train"]})
    with pytest.raises(DataError, match=r"the splits"):
        write_task_dir(tmp_path / "u", "afqmc", {**_splits(), "calib": _splits()["train"]})


def test_load_task_dir_bad_labels_and_missing_files(tmp_path: Path) -> None:
    target = write_task_dir(tmp_path / "t", "afqmc", _splits())
    (target / "labels.json").write_text('["0", "2"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"labels.json:1: field '<labels>'"):
        load_task_dir(target)
    (target / "labels.json").write_text('["1", "0"]\n', encoding="utf-8")
    assert load_task_dir(target).label_ids == {"1": 0, "0": 1}  # file order is the id order
    (target / "dev.json").unlink()
    with pytest.raises(DataError, match=r"dev\.json: field '<file>'.*no such file"):
        load_task_dir(target)
    with pytest.raises(DataError, match="no such directory"):
        load_task_dir(tmp_path / "missing")


# ---------------------------------------------------------------- CLUE through paddlenlp


def _clue_rows(task: str, n: int, offset: int, labelled: bool = True) -> list[dict[str, Any]]:
    rows = []
    labels = TASK_SPECS[task].labels
    for i in range(offset, offset + n):
        if task in ("afqmc", "ocnli"):
            row: dict[str, Any] = {"sentence1": f"问题{i}", "sentence2": f"回答{i}"}
        else:  # tnews
            row = {"sentence": f"新闻标题{i}", "keywords": ""}
        if labelled:
            row["label"] = labels[i % len(labels)]
        else:
            row["id"] = i
        rows.append(row)
    return rows


def _clue_folder(root: Path, task: str, train_name: str = "train.json") -> Path:
    folder = root / f"{task}_public"
    folder.mkdir(parents=True)
    train = _clue_rows(task, 60, 0)
    dev = _clue_rows(task, 10, 100)
    dev.append(dict(train[0]))  # a train text that is also in dev: dropped from train
    _write_lines(folder / train_name, train)
    _write_lines(folder / "dev.json", dev)
    _write_lines(folder / "test.json", _clue_rows(task, 8, 200, labelled=False))
    return folder


def test_download_clue_from_local_folder(tmp_path: Path) -> None:
    from ppminilm.data.clue import download_clue

    home = tmp_path / "Clue"
    _clue_folder(home, "afqmc")
    out = download_clue("AFQMC", tmp_path / "afqmc", data_home=home)
    data = load_task_dir(out, "afqmc")
    # Train is kept whole (no calibration carve): 60 minus the one text that is also in dev.
    assert data.counts() == {"train": 59, "dev": 11, "test": 8}
    assert not (out / "calib.json").exists()
    assert data.labels == ["0", "1"] and "local files" in data.source
    assert all(isinstance(e["label"], str) for e in data.train)


def test_download_clue_label_order_and_zip(tmp_path: Path) -> None:
    from ppminilm.data.clue import download_clue

    home = tmp_path / "Clue"
    # OCNLI: paddlenlp's label order differs from ours; the strings must survive the round trip.
    folder = _clue_folder(home, "ocnli", train_name="train.50k.json")
    written = [json.loads(x) for x in (folder / "dev.json").read_text().splitlines()]
    data = load_task_dir(download_clue("ocnli", tmp_path / "ocnli", data_home=home))
    assert data.dev == written
    # TNEWS shipped as the zip paddlenlp downloads: extracted in place, then read.
    folder = _clue_folder(home, "tnews")
    with zipfile.ZipFile(home / "tnews_public.zip", "w") as zf:
        for path in folder.iterdir():
            zf.write(path, f"tnews_public/{path.name}")
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    data = load_task_dir(download_clue("tnews", tmp_path / "tnews", data_home=home))
    assert {e["label"] for e in data.train} <= set(TASK_SPECS["tnews"].labels)


def test_download_clue_cmnli_train_with_no_majority_labels(tmp_path: Path) -> None:
    """paddlenlp's reader only skips "-" in cmnli dev; a "-" in train falls back to ours."""
    from ppminilm.data.clue import download_clue

    home = tmp_path / "Clue"
    folder = home / "cmnli_public"
    folder.mkdir(parents=True)
    train = _clue_rows("ocnli", 40, 0)
    _write_lines(folder / "train.json", [*train, {**_pair(99), "label": "-"}])
    _write_lines(folder / "dev.json", [*_clue_rows("ocnli", 6, 100), {**_pair(98), "label": "-"}])
    _write_lines(folder / "test.json", _clue_rows("ocnli", 4, 200, labelled=False))
    data = load_task_dir(download_clue("cmnli", tmp_path / "cmnli", data_home=home))
    assert data.counts() == {"train": 40, "dev": 6, "test": 4}
    assert "-" not in {e["label"] for e in data.train + data.dev}


def test_download_clue_missing_local_files(tmp_path: Path) -> None:
    from ppminilm.data.clue import ClueDownloadError, download_clue

    with pytest.raises(ClueDownloadError, match=r"afqmc_public.*train.json"):
        download_clue("afqmc", tmp_path / "out", data_home=tmp_path)
    with pytest.raises(ValueError, match="not a CLUE task"):
        download_clue("local_pairs", tmp_path / "out")


def test_download_clue_offline_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No data_home: paddlenlp looks in DATA_HOME/Clue, finds nothing, cannot download (the
    proxy points at a closed port), and the error says where it looked and what to do."""
    from ppminilm.data.clue import ClueDownloadError, _paddlenlp, download_clue

    # DATA_HOME is fixed when paddlenlp is imported ($PPNLP_HOME/datasets); point the three
    # modules that read it at a temp folder so nothing touches ~/.paddlenlp.
    data_home = tmp_path / "datasets"
    for module in ("utils.env", "datasets.dataset", "datasets.clue"):
        monkeypatch.setattr(_paddlenlp(module), "DATA_HOME", str(data_home))
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ClueDownloadError) as info:
        download_clue("afqmc", tmp_path / "out")
    message = str(info.value)
    assert "could not download CLUE afqmc" in message
    assert str(data_home / "Clue") in message and "data_home" in message
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- CLI


def _cli(argv: list[str]) -> int:
    from ppminilm.cli import main

    return main(argv)


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = write_task_dir(tmp_path / "t", "afqmc", _splits())
    assert _cli(["data", "validate", str(target)]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["train"] == 3
    assert _cli(["data", "validate", str(target / "dev.json"), "--task", "afqmc"]) == 0
    bad = _write_lines(tmp_path / "bad.json", [_pair(1), {"sentence1": "x", "label": "0"}])
    capsys.readouterr()
    assert _cli(["data", "validate", str(bad), "--task", "afqmc"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: field 'sentence2'" in err and "Traceback" not in err


def test_cli_download_clue_offline_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "Clue"
    _clue_folder(home, "afqmc")
    assert (
        _cli(
            [
                "data",
                "download-clue",
                "--task",
                "afqmc",
                "--out",
                str(tmp_path / "a"),
                "--data-home",
                str(home),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["counts"]["dev"] == 11
    assert (
        _cli(
            [
                "data",
                "download-clue",
                "--task",
                "afqmc",
                "--out",
                str(tmp_path / "b"),
                "--data-home",
                str(tmp_path / "empty"),
            ]
        )
        == 3
    )
