"""Data sources: task directories (local or object storage) and staging for offline clusters."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import minio
import pytest

from ppminilm import storage
from ppminilm.data import load_task_dir
from ppminilm.errors import UserError
from ppminilm.runner.sources import import_task_dirs, stage_data
from tests.s3server import RunningS3Server
from tests.unit.test_custom_tasks import custom_task_dir


def _bucket(server: RunningS3Server) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    minio.Minio(
        server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1"
    ).make_bucket(name)
    return name


def _clue_home(root: Path, task: str = "afqmc") -> Path:
    folder = root / f"{task}_public"
    folder.mkdir(parents=True)
    rows = {
        "train.json": [
            {"sentence1": f"问{i}", "sentence2": f"答{i}", "label": str(i % 2)} for i in range(20)
        ],
        "dev.json": [
            {"sentence1": f"问{i}", "sentence2": f"答{i}", "label": str(i % 2)}
            for i in range(100, 106)
        ],
        "test.json": [
            {"sentence1": f"问{i}", "sentence2": f"答{i}", "id": i} for i in range(200, 204)
        ],
    }
    for name, lines in rows.items():
        (folder / name).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8"
        )
    return root


def test_import_one_dir_or_a_dir_of_dirs(tmp_path: Path) -> None:
    one = custom_task_dir(tmp_path / "src" / "a", name="src_a")
    custom_task_dir(tmp_path / "src" / "b", name="src_b", pair=True)
    counts = import_task_dirs(str(one), tmp_path / "out1")
    assert counts == {"src_a": {"train": 12, "dev": 6, "test": 6}}
    assert load_task_dir(tmp_path / "out1" / "src_a").task == "src_a"
    assert set(import_task_dirs(str(tmp_path / "src"), tmp_path / "out2")) == {"src_a", "src_b"}
    assert list(import_task_dirs(str(tmp_path / "src"), tmp_path / "out3", ["SRC_B"])) == ["src_b"]
    with pytest.raises(UserError, match=r"no task directory for \['src_c'\]; it holds"):
        import_task_dirs(str(tmp_path / "src"), tmp_path / "out4", ["src_c"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no task directory in it"):
        import_task_dirs(str(tmp_path / "empty"), tmp_path / "out5")
    with pytest.raises(UserError, match="no such directory"):
        import_task_dirs(str(tmp_path / "absent"), tmp_path / "out5")


def test_import_from_object_storage(s3_env: RunningS3Server, tmp_path: Path) -> None:
    bucket = _bucket(s3_env)
    a = custom_task_dir(tmp_path / "a", name="s3_a")
    b = custom_task_dir(tmp_path / "b", name="s3_b")
    # Each task directory published on its own (one manifest each) ...
    storage.upload_dir(a, f"s3://{bucket}/each/s3_a")
    storage.upload_dir(b, f"s3://{bucket}/each/s3_b")
    assert set(import_task_dirs(f"s3://{bucket}/each", tmp_path / "o1")) == {"s3_a", "s3_b"}
    # ... or a whole tasks/ tree under one manifest (what `data stage` writes).
    tree = tmp_path / "tree"
    for src in (a, b):
        shutil.copytree(src, tree / src.name)
    storage.upload_dir(tree, f"s3://{bucket}/whole")
    assert set(import_task_dirs(f"s3://{bucket}/whole", tmp_path / "o2")) == {"s3_a", "s3_b"}
    with pytest.raises(UserError, match="holds no task directories"):
        import_task_dirs(f"s3://{bucket}/nothing-here", tmp_path / "o3")


def test_build_data_from_a_custom_source(tmp_path: Path) -> None:
    from ppminilm.runner import build_data

    src = custom_task_dir(tmp_path / "src" / "t", name="bd_custom")
    summary = build_data(tmp_path / "data", source=str(tmp_path / "src"), tasks=["bd_custom"])
    assert summary.result["tasks"] == ["bd_custom"]
    assert load_task_dir(tmp_path / "data" / "tasks" / "bd_custom").counts()["train"] == 12
    assert not (tmp_path / "data" / "corpus").exists()  # optional without distillation
    with pytest.raises(UserError, match="no such directory"):
        build_data(tmp_path / "d2", source=str(src / "missing"))


def test_stage_data_publishes_the_pipeline_layout(s3_env: RunningS3Server, tmp_path: Path) -> None:
    from ppminilm.data.tokenizer import build_vocab

    bucket = _bucket(s3_env)
    home = _clue_home(tmp_path / "Clue")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "part-00000.txt").write_text("问答句子一\n问答句子二\n", encoding="utf-8")
    build_vocab([corpus / "part-00000.txt"], tmp_path / "vocab", min_freq=1)
    params = stage_data(
        f"s3://{bucket}/recipe",
        tasks=["afqmc"],
        data_home=str(home),
        corpus=str(corpus),
        vocab=str(tmp_path / "vocab"),
    )
    assert params == {
        "data_source": f"s3://{bucket}/recipe/tasks",
        "corpus_uri": f"s3://{bucket}/recipe/corpus",
        "vocab_uri": f"s3://{bucket}/recipe/vocab",
    }
    # The pipeline's build-data step reads exactly that.
    from ppminilm.runner import build_data

    summary = build_data(
        tmp_path / "data",
        source=params["data_source"],
        tasks=["afqmc"],
        corpus_uri=params["corpus_uri"],
        vocab_uri=params["vocab_uri"],
    )
    assert summary.result["counts"] == {"afqmc": {"train": 20, "dev": 6, "test": 4}}
    assert (tmp_path / "data" / "vocab" / "vocab.txt").is_file()
    assert (tmp_path / "data" / "corpus" / "part-00000.txt").is_file()
    with pytest.raises(UserError, match="nothing to publish"):
        stage_data(f"s3://{bucket}/empty")


def test_cli_data_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ppminilm.cli import main

    home = _clue_home(tmp_path / "Clue")
    out = tmp_path / "staged"
    argv = ["data", "stage", "--to", str(out), "--tasks", "afqmc", "--data-home", str(home)]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {"data_source": f"{out}/tasks"}
    assert load_task_dir(out / "tasks" / "afqmc").counts()["dev"] == 6
