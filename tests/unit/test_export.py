"""Static export of a fine-tuned classifier: Paddle Inference must agree with the dynamic model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ppminilm.cli import EXIT_USAGE, main
from ppminilm.config import FinetuneConfig, InferConfig
from ppminilm.data import load_task_dir
from ppminilm.data.tokenizer import load_tokenizer
from ppminilm.inference.predictor import Predictor
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.export import read_serving_config
from ppminilm.modeling.saved import ModelFormatError, ModelInfo, load_model, save_model
from ppminilm.stages.export import run_export
from ppminilm.stages.finetune import encode_split, run_finetune
from ppminilm.training.loop import predict_logits
from tests.tiny import TINY_ARCH as TINY

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration

#: Dropout on: the export must run in eval mode for static == dynamic.
TINY_ARCH = TINY.replace(dropout=0.1)
SEQ = 32
#: Static and dynamic logits of the same weights may differ by float rounding only.
LOGIT_ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_trained(local_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A briefly trained tiny classifier (trained weights, not just the random init)."""
    cfg = FinetuneConfig(
        task="local_reviews", batch_size=16, learning_rate=3e-3, max_steps=15,
        max_seq_len=SEQ, eval_steps=100, logging_steps=5,
    )  # fmt: skip
    return run_finetune(
        local_data_dir / "tasks" / "local_reviews", "scratch",
        tmp_path_factory.mktemp("exp") / "model", cfg,
        tokenizer_dir=local_data_dir / "vocab", arch=TINY_ARCH,
    ).to_dict()  # fmt: skip


def test_static_model_matches_dynamic(
    tiny_trained: dict[str, Any], local_data_dir: Path, tmp_path: Path
) -> None:
    model_dir = Path(tiny_trained["model_dir"])
    task_dir = local_data_dir / "tasks" / "local_reviews"
    summary = run_export(model_dir, tmp_path / "infer", SEQ, task_dir=task_dir)

    serving = read_serving_config(tmp_path / "infer")
    assert serving.max_seq_len == SEQ and serving.labels == ["0", "1"]
    assert serving.task == "local_reviews"
    assert (tmp_path / "infer" / "vocab.txt").is_file()
    provenance = json.loads((tmp_path / "infer" / "provenance.json").read_text())
    assert provenance["parent"] == str(model_dir) and provenance["format"] == "paddle-static"

    # Independent check: dynamic model vs Paddle Inference predictor on the whole dev set.
    model, info = load_model(model_dir)
    data = load_task_dir(task_dir)
    dev = encode_split(load_tokenizer(tmp_path / "infer"), data.dev, data.task, info.labels, SEQ)
    dynamic = predict_logits(model, dev)
    cfg = InferConfig(max_seq_len=SEQ, num_threads=1, use_mkldnn=False, use_trt=False)
    static = Predictor(tmp_path / "infer", cfg).logits(dev, 64)
    assert static.shape == dynamic.shape == (len(data.dev), 2)
    np.testing.assert_array_equal(static.argmax(-1), dynamic.argmax(-1))
    np.testing.assert_allclose(static, dynamic, atol=LOGIT_ATOL)
    # Dropout is on in this arch: equality also shows the export ran in eval mode.
    assert summary["argmax_agreement"] == 1.0
    assert summary["max_abs_logit_diff"] <= LOGIT_ATOL
    assert summary["dev_acc_static"] == summary["dev_acc_dynamic"]


def test_export_rejects_non_classifier(tmp_path: Path, local_data_dir: Path) -> None:
    encoder = build_model(TINY_ARCH, "encoder")
    save_model(encoder, tmp_path / "enc", ModelInfo(arch=TINY_ARCH, kind="encoder"),
               tokenizer_dir=local_data_dir / "vocab")  # fmt: skip
    with pytest.raises(ModelFormatError, match="export needs a fine-tuned classifier"):
        run_export(tmp_path / "enc", tmp_path / "out", SEQ)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ModelFormatError, match="missing: no such model directory"):
        run_export(tmp_path / "missing", tmp_path / "out", SEQ)
    # A directory that is no model says what it expected and what it found.
    with pytest.raises(ModelFormatError, match=r"not a model directory.*found \[.*'vocab\.txt'"):
        run_export(local_data_dir / "vocab", tmp_path / "out", SEQ)
    assert not (tmp_path / "out").exists()


def test_cli_export(tiny_trained: dict[str, Any], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "infer"
    assert main(["export", "--model-dir", tiny_trained["model_dir"], "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)["result"]
    assert printed["max_seq_len"] == 64  # the local profile's fine-tuning max_seq_len
    assert read_serving_config(out).max_seq_len == 64
    assert main(["export", "--model-dir", str(tmp_path / "nope"), "--out", str(out)]) == EXIT_USAGE
