"""Grid search: best-point selection, the grid table, and a small sequential grid run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ppminilm.cli import EXIT_USAGE, main
from ppminilm.config import FinetuneConfig, GridConfig
from ppminilm.contracts import GRID_JSON, GRID_MD, WEIGHTS_FILE, FinetuneResult, GridPoint
from ppminilm.errors import UserError
from ppminilm.stages.grid import (
    grid_markdown,
    read_grid_results,
    run_grid,
    select_best,
    write_grid_table,
)
from tests.tiny import TINY_ARCH


def result(bs: int, lr: float, acc: float, task: str = "tnews", **extra: Any) -> FinetuneResult:
    return FinetuneResult(
        task=task, batch_size=bs, learning_rate=lr, best_dev_acc=acc, best_step=1, **extra
    )


def test_select_best_highest_accuracy() -> None:
    results = [result(16, 3e-5, 0.50), result(32, 5e-5, 0.61), result(64, 1e-4, 0.55)]
    assert select_best(results).batch_size == 32


def test_select_best_tie_breaks() -> None:
    # Equal accuracy: the smaller learning rate wins, whatever the order or batch size.
    tie_lr = [result(16, 1e-4, 0.6), result(64, 3e-5, 0.6), result(32, 5e-5, 0.6)]
    assert select_best(tie_lr).point == GridPoint(batch_size=64, learning_rate=3e-5)
    # Equal accuracy and learning rate: the smaller batch size wins.
    tie_bs = [result(64, 5e-5, 0.6), result(16, 5e-5, 0.6), result(32, 5e-5, 0.6)]
    assert select_best(tie_bs).batch_size == 16
    # Complete tie (e.g. a point run twice): the earliest result wins.
    tie_all = [result(16, 5e-5, 0.6, model_dir="a"), result(16, 5e-5, 0.6, model_dir="b")]
    assert select_best(tie_all).model_dir == "a"
    assert select_best(list(reversed(tie_all))).model_dir == "b"


def test_select_best_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="empty"):
        select_best([])
    with pytest.raises(UserError, match=r"mix tasks \['afqmc', 'tnews'\]"):
        select_best([result(16, 3e-5, 0.5), result(16, 3e-5, 0.7, task="afqmc")])
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"task": "tnews", "batch_size": 16, "learning_rate": 1e-4}))
    with pytest.raises(UserError, match=r"partial\.json\[0\].*best_dev_acc"):
        read_grid_results(partial)


def test_grid_table_content(tmp_path: Path) -> None:
    grid = GridConfig()
    accs = iter([0.51, 0.52, 0.53, 0.54, 0.58, 0.55, 0.56, 0.57, 0.50])
    results = [result(p["batch_size"], p["learning_rate"], next(accs), majority_acc=0.4)
               for p in grid.points()]  # fmt: skip
    paths = write_grid_table(results, tmp_path / "out")
    md = Path(paths["markdown"]).read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0] == "### tnews: dev accuracy, batch size x learning rate"
    assert lines[2] == "| batch size | lr 3e-05 | lr 5e-05 | lr 0.0001 |"
    assert lines[4] == "| 16 | 0.5100 | 0.5200 | 0.5300 |"
    assert lines[5] == "| 32 | 0.5400 | **0.5800** ★ | 0.5500 |"
    assert lines[6] == "| 64 | 0.5600 | 0.5700 | 0.5000 |"
    assert md.count("★") == 1
    assert "Best: batch size 32, learning rate 5e-05, dev accuracy 0.5800 (majority" in md
    record = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    assert record["task"] == "tnews" and len(record["results"]) == 9
    assert record["best"]["best_dev_acc"] == 0.58 and record["best"]["batch_size"] == 32
    assert read_grid_results(paths["json"]) == results


def test_grid_table_missing_point_and_mixed_tasks(tmp_path: Path) -> None:
    md = grid_markdown([result(16, 3e-5, 0.7), result(32, 5e-5, 0.6)])
    assert "| 16 | **0.7000** ★ | - |" in md and "| 32 | - | 0.6000 |" in md
    with pytest.raises(UserError, match="mix tasks"):
        write_grid_table([result(16, 3e-5, 0.5), result(16, 3e-5, 0.5, task="csl")], tmp_path)
    assert not (tmp_path / GRID_JSON).exists()


def test_read_grid_results_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such grid results file"):
        read_grid_results(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\n  oops", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.json:2:\d+: invalid JSON"):
        read_grid_results(bad)
    one = tmp_path / "one.json"
    one.write_text(json.dumps(result(16, 3e-5, 0.5).to_dict()), encoding="utf-8")
    assert read_grid_results(one) == [result(16, 3e-5, 0.5)]


def test_cli_select_best(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(result(16, 3e-5, 0.5).to_dict()), encoding="utf-8")
    b.write_text(json.dumps([result(32, 3e-5, 0.6).to_dict()]), encoding="utf-8")
    table = tmp_path / "t" / GRID_MD
    assert main(["select-best", str(a), str(b), "--grid-md", str(table)]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["best"]["batch_size"] == 32
    assert table.is_file()
    c = tmp_path / "c.json"
    c.write_text(json.dumps(result(32, 3e-5, 0.9, task="csl").to_dict()), encoding="utf-8")
    assert main(["select-best", str(a), str(c)]) == EXIT_USAGE


@pytest.mark.integration
def test_run_grid_small(local_data_dir: Path, tmp_path: Path) -> None:
    cfg = FinetuneConfig(
        task="local_reviews", max_steps=2, max_seq_len=16, eval_steps=1, logging_steps=1
    )
    grid = GridConfig(batch_sizes=[8, 16], learning_rates=[1e-3])
    results = run_grid(
        local_data_dir / "tasks" / "local_reviews", "scratch", tmp_path, cfg, grid,
        tokenizer_dir=local_data_dir / "vocab", arch=TINY_ARCH,
    )  # fmt: skip
    assert [(r.batch_size, r.learning_rate) for r in results] == [(8, 1e-3), (16, 1e-3)]
    for r in results:
        assert Path(r.model_dir) == tmp_path / f"bs{r.batch_size}_lr0.001"
        assert (Path(r.model_dir) / WEIGHTS_FILE).is_file()
        assert r.steps == 2
    record = json.loads((tmp_path / GRID_JSON).read_text(encoding="utf-8"))
    # Oracle independent of select_best: the highest accuracy, ties to the smaller batch.
    expected = max(results, key=lambda r: (r.best_dev_acc, -r.batch_size))
    assert record["best"]["batch_size"] == expected.batch_size
    assert (tmp_path / GRID_MD).read_text(encoding="utf-8").count("★") == 1
