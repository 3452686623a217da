"""Fine-tuning one grid point: a tiny real model on the small local review task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from ppminilm.cli import EXIT_USAGE, main
from ppminilm.config import FinetuneConfig
from ppminilm.contracts import LEGACY_WEIGHTS_FILE, WEIGHTS_FILE
from ppminilm.data import DataError
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import (
    ModelFormatError,
    ModelInfo,
    load_model,
    read_model_info,
    save_model,
)
from ppminilm.stages.finetune import encode_split, parse_init, run_finetune
from ppminilm.training.loop import accuracy, predict_logits
from tests.tiny import TINY_ARCH

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration

#: 2 layers, 32 wide: trains in seconds on 2 CPU cores.
TINY_SEQ = 32
#: The mean training loss of the last logging window must be below this share of the first.
LOSS_DROP_RATIO = 0.9
#: Dev accuracies of the same weights evaluated twice may differ by float noise only.
ACC_TOLERANCE = 1e-9
#: Max change of a loaded weight after 3 small steps (a re-drawn N(0, 0.02) table differs by ~0.1).
LOADED_WEIGHT_DRIFT = 0.02


def tiny_config(**changes: Any) -> FinetuneConfig:
    """Fine-tuning settings for the tiny model (4 epochs of 400 examples = 100 steps)."""
    base = dict(
        task="local_reviews",
        batch_size=16,
        learning_rate=3e-3,
        num_epochs=4,
        max_seq_len=TINY_SEQ,
        eval_steps=10,
        logging_steps=5,
        seed=3,
    )
    return FinetuneConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def reviews_dir(local_data_dir: Path) -> Path:
    return local_data_dir / "tasks" / "local_reviews"


@pytest.fixture(scope="module")
def vocab_dir(local_data_dir: Path) -> Path:
    return local_data_dir / "vocab"


@pytest.fixture(scope="module")
def trained(
    reviews_dir: Path, vocab_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One scratch fine-tuning run, shared by the tests that inspect its result."""
    out = tmp_path_factory.mktemp("ft") / "model"
    return run_finetune(
        reviews_dir, "scratch", out, tiny_config(), tokenizer_dir=vocab_dir, arch=TINY_ARCH
    ).to_dict()


def test_summary_fields(trained: dict[str, Any]) -> None:
    for key in (
        "task", "batch_size", "learning_rate", "best_dev_acc", "best_step", "majority_acc",
        "train_examples", "dev_examples", "steps", "seconds", "model_dir",
    ):  # fmt: skip
        assert key in trained, key
    assert trained["task"] == "local_reviews"
    assert trained["train_examples"] == 400 and trained["dev_examples"] == 80
    assert trained["steps"] == 4 * 25  # 4 epochs x ceil(400 / 16)
    assert 0.5 <= trained["majority_acc"] < 1.0
    json.dumps(trained)  # plain JSON-able values only


def test_tiny_model_loss_falls(trained: dict[str, Any]) -> None:
    assert trained["train_loss_end"] < LOSS_DROP_RATIO * trained["train_loss_start"]


def test_best_checkpoint_is_kept(trained: dict[str, Any], reviews_dir: Path) -> None:
    evals = trained["evals"]
    # Every eval_steps steps plus each epoch end (25, 50, 75 are not multiples of 10).
    assert [e["step"] for e in evals] == [10, 20, 25, 30, 40, 50, 60, 70, 75, 80, 90, 100]
    best = max(e["dev_acc"] for e in evals)
    first_best = next(e for e in evals if e["dev_acc"] == best)
    assert trained["best_dev_acc"] == best
    assert trained["best_step"] == first_best["step"]

    model_dir = Path(trained["model_dir"])
    info = read_model_info(model_dir)
    assert info.kind == "classifier" and info.labels == ["0", "1"] and info.task == "local_reviews"
    assert info.arch.vocab_size == len((model_dir / "vocab.txt").read_text().splitlines())
    provenance = json.loads((model_dir / "provenance.json").read_text())
    assert provenance["details"]["best_step"] == trained["best_step"]
    assert provenance["details"]["dev_acc"] == best
    assert provenance["details"]["majority_acc"] == trained["majority_acc"]
    assert provenance["config"]["learning_rate"] == 3e-3
    assert provenance["parent"].startswith("scratch")

    # The saved weights really are the best evaluated ones: re-evaluating gives that accuracy.
    from ppminilm.data import load_task_dir
    from ppminilm.data.tokenizer import load_tokenizer

    model, _ = load_model(model_dir)
    data = load_task_dir(reviews_dir)
    dev = encode_split(load_tokenizer(model_dir), data.dev, data.task, data.labels, TINY_SEQ)
    assert abs(accuracy(predict_logits(model, dev), dev["labels"]) - best) <= ACC_TOLERANCE


def test_init_from_saved_encoder_and_foreign_classifier(
    trained: dict[str, Any], reviews_dir: Path, tmp_path: Path
) -> None:
    vocab = Path(trained["model_dir"])
    arch = read_model_info(vocab).arch
    # An encoder checkpoint (what distillation produces) gets a fresh 2-class head.
    encoder = build_model(arch, "encoder")
    save_model(encoder, tmp_path / "enc", ModelInfo(arch=arch, kind="encoder"), tokenizer_dir=vocab)
    cfg = tiny_config(max_steps=3, eval_steps=100)
    summary = run_finetune(reviews_dir, tmp_path / "enc", tmp_path / "ft_enc", cfg).to_dict()
    assert summary["steps"] == 3 and summary["init"] == str(tmp_path / "enc")
    # The encoder weights were loaded, not re-drawn: the token embedding started equal.
    enc_emb = encoder.embeddings.word_embeddings.weight.numpy()
    ft, _ = load_model(tmp_path / "ft_enc")
    assert (
        np.abs(ft.ernie.embeddings.word_embeddings.weight.numpy() - enc_emb).max()
        < LOADED_WEIGHT_DRIFT
    )
    # A classifier of another task (3 labels) gets its head replaced by a 2-class one.
    other = build_model(arch, "classifier", num_classes=3)
    save_model(
        other,
        tmp_path / "cls3",
        ModelInfo(arch=arch, kind="classifier", task="cmnli", labels=["a", "b", "c"]),
        tokenizer_dir=vocab,
    )
    summary = run_finetune(reviews_dir, tmp_path / "cls3", tmp_path / "ft_cls3", cfg).to_dict()
    model, info = load_model(tmp_path / "ft_cls3")
    assert info.labels == ["0", "1"] and list(model.classifier.weight.shape) == [32, 2]


def test_parse_init() -> None:
    spec = parse_init("scratch:" + json.dumps(TINY_ARCH.to_dict()))
    assert spec.model_dir is None and spec.arch == TINY_ARCH
    assert parse_init(None, TINY_ARCH).arch == TINY_ARCH
    with pytest.raises(ValueError, match="needs an architecture"):
        parse_init("scratch")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_init("scratch:{oops")
    with pytest.raises(ValueError, match="unknown ModelArch key"):
        parse_init('scratch:{"layers": 2}')


# --------------------------------------------------------------------------- bad inputs


def test_missing_task_dir(tmp_path: Path, vocab_dir: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        run_finetune(
            tmp_path / "nope", "scratch", tmp_path / "m", tiny_config(),
            tokenizer_dir=vocab_dir, arch=TINY_ARCH,
        )  # fmt: skip
    assert not (tmp_path / "m").exists()


def test_unknown_task(tmp_path: Path, reviews_dir: Path, vocab_dir: Path) -> None:
    with pytest.raises(ValueError, match="task name 'wei bo' is not valid"):
        tiny_config(task="wei bo")
    # A custom name is a valid config; the task directory must then describe it.
    with pytest.raises(DataError, match=r"task\.json.*task 'weibo'"):
        run_finetune(
            reviews_dir, "scratch", tmp_path / "m", tiny_config(task="weibo"),
            tokenizer_dir=vocab_dir, arch=TINY_ARCH,
        )  # fmt: skip
    # A task dir whose task differs from the config's is refused, naming task.json.
    with pytest.raises(DataError, match=r"task\.json.*'local_pairs'"):
        run_finetune(
            reviews_dir, "scratch", tmp_path / "m", tiny_config(task="local_pairs"),
            tokenizer_dir=vocab_dir, arch=TINY_ARCH,
        )  # fmt: skip


def test_empty_train_split(tmp_path: Path, reviews_dir: Path, vocab_dir: Path) -> None:
    task_dir = tmp_path / "task"
    shutil.copytree(reviews_dir, task_dir)
    (task_dir / "train.json").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.json.*empty split"):
        run_finetune(
            task_dir, "scratch", tmp_path / "m", tiny_config(),
            tokenizer_dir=vocab_dir, arch=TINY_ARCH,
        )  # fmt: skip


def test_init_model_with_wrong_files(
    tmp_path: Path, reviews_dir: Path, vocab_dir: Path, trained: dict[str, Any]
) -> None:
    cfg = tiny_config(max_steps=1)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        run_finetune(reviews_dir, tmp_path / "absent", tmp_path / "m", cfg)
    # A directory without model_config.json (e.g. a static inference model or a data dir).
    not_a_model = r"not a model directory.*model_config\.json.*found \[.*vocab\.txt"
    with pytest.raises(ModelFormatError, match=not_a_model):
        run_finetune(reviews_dir, vocab_dir, tmp_path / "m", cfg)
    # Config but no weights.
    broken = tmp_path / "noweights"
    shutil.copytree(trained["model_dir"], broken)
    (broken / WEIGHTS_FILE).unlink()
    with pytest.raises(ModelFormatError, match=r"no weights; expected model\.safetensors or"):
        run_finetune(reviews_dir, broken, tmp_path / "m", cfg)
    # Weights that do not fit the architecture in model_config.json.
    wrong = tmp_path / "wrongshape"
    shutil.copytree(trained["model_dir"], wrong)
    config = json.loads((wrong / "model_config.json").read_text())
    config["arch"]["intermediate_size"] = 48
    (wrong / "model_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="has shape"):
        run_finetune(reviews_dir, wrong, tmp_path / "m", cfg)
    # Scratch without a tokenizer.
    with pytest.raises(ValueError, match="needs tokenizer_dir"):
        run_finetune(reviews_dir, "scratch", tmp_path / "m", cfg, arch=TINY_ARCH)
    assert not (tmp_path / "m").exists()


def test_cli_finetune_bad_input_exit_code(tmp_path: Path, vocab_dir: Path) -> None:
    code = main(
        ["finetune", "--task-dir", str(tmp_path / "nope"), "--init", "scratch",
         "--tokenizer-dir", str(vocab_dir), "--out", str(tmp_path / "m")]
    )  # fmt: skip
    assert code == EXIT_USAGE


def test_cli_finetune_runs(
    tmp_path: Path, reviews_dir: Path, vocab_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arch = json.dumps(TINY_ARCH.to_dict())
    code = main(
        ["finetune", "--task-dir", str(reviews_dir), "--init", f"scratch:{arch}",
         "--tokenizer-dir", str(vocab_dir), "--profile", "local", "--max-steps", "2",
         "--max-seq-len", str(TINY_SEQ), "--batch-size", "8", "--learning-rate", "1e-3",
         "--out", str(tmp_path / "m"), "--summary", str(tmp_path / "s.json")]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)["result"]
    saved = json.loads((tmp_path / "s.json").read_text())["result"]
    assert printed["steps"] == saved["steps"] == 2
    assert saved["batch_size"] == 8 and saved["task"] == "local_reviews"
    # Safetensors only (reading them runs no code), read here without the project's loader.
    weights = load_file(str(tmp_path / "m" / WEIGHTS_FILE))
    assert weights["classifier.weight"].shape == (TINY_ARCH.hidden_size, 2)
    assert not (tmp_path / "m" / LEGACY_WEIGHTS_FILE).exists()
