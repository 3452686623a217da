"""Checkpoint resume: the newest intact checkpoint wins, damage is named, shapes are strict.

Real Paddle models and optimizers (tiny ones), real files, real S3 (moto) for the remote case.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import minio
import numpy as np
import pytest
from s3server import RunningS3Server

from ppminilm import storage
from ppminilm.compat.paddle import paddle
from ppminilm.config import ModelArch
from ppminilm.modeling.ernie import build_model
from ppminilm.training.checkpoint import (
    CHECKSUM_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    CheckpointError,
    latest_step,
    load_latest_checkpoint,
    restore_training,
    save_checkpoint,
)
from ppminilm.training.loop import make_optimizer

ARCH = ModelArch(
    num_layers=1, hidden_size=8, num_heads=2, intermediate_size=16, vocab_size=20, max_position=16
)


def _trained(seed: int, arch: ModelArch = ARCH):
    paddle.seed(seed)
    model = build_model(arch)
    opt, _ = make_optimizer(model, 1e-2, 10, warmup_steps=1)
    sum(p.sum() for p in model.parameters()).backward()
    opt.step()
    opt.clear_grad()
    return model, opt


def _save_steps(where: str | Path, steps: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Save one checkpoint per step (other weights each time); return a weight per step."""
    marks = {}
    for step in steps:
        model, opt = _trained(step)
        save_checkpoint(where, step, model, opt, {"data": {"step": step}}, keep=0)
        marks[step] = next(iter(model.state_dict().values())).numpy().copy()
    return marks


def _first_weight(ckpt) -> np.ndarray:
    return np.asarray(next(iter(ckpt.model_state.values())))


def test_damaged_newest_checkpoint_falls_back_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marks = _save_steps(tmp_path, (10, 20, 30))
    (tmp_path / "step-00000030" / MODEL_FILE).write_bytes(b"")  # truncated
    data = bytearray((tmp_path / "step-00000020" / OPTIMIZER_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one bit pattern flipped: only the checksum sees it
    (tmp_path / "step-00000020" / OPTIMIZER_FILE).write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        ckpt = load_latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.step == 10 and ckpt.state["data"] == {"step": 10}
    np.testing.assert_array_equal(_first_weight(ckpt), marks[10])
    warned = caplog.text
    assert "step-00000030" in warned and "step-00000020" in warned
    assert "resuming from" in warned and "step-00000010" in warned


def test_no_intact_checkpoint_is_an_error_naming_each(tmp_path: Path) -> None:
    _save_steps(tmp_path, (1, 2))
    for step in ("step-00000001", "step-00000002"):
        (tmp_path / step / CHECKSUM_FILE).write_text("{not json")
    with pytest.raises(CheckpointError) as info:
        load_latest_checkpoint(tmp_path)
    assert "step-00000001" in str(info.value) and "step-00000002" in str(info.value)
    assert info.value.exit_code == 2


def test_empty_directory_has_no_checkpoint(tmp_path: Path) -> None:
    assert load_latest_checkpoint(tmp_path / "nothing") is None


def test_restore_refuses_a_checkpoint_of_another_shape(tmp_path: Path) -> None:
    wider = ARCH.replace(intermediate_size=24)
    model, opt = _trained(0, wider)
    save_checkpoint(tmp_path, 5, model, opt, {})
    target, target_opt = _trained(1)
    before = {k: v.numpy().copy() for k, v in target.state_dict().items()}
    ckpt = load_latest_checkpoint(tmp_path)
    assert ckpt is not None
    with pytest.raises(CheckpointError, match=r"shape \[8, 24\] but the model needs \[8, 16\]"):
        restore_training(ckpt, target, target_opt)
    for key, value in target.state_dict().items():  # nothing was half-loaded
        np.testing.assert_array_equal(value.numpy(), before[key])


def test_restore_refuses_missing_or_extra_tensors(tmp_path: Path) -> None:
    model, opt = _trained(0)
    save_checkpoint(tmp_path, 5, model, opt, {})
    ckpt = load_latest_checkpoint(tmp_path)
    assert ckpt is not None
    dropped = next(iter(ckpt.model_state))
    del ckpt.model_state[dropped]
    with pytest.raises(CheckpointError, match=f"lacks 1 tensor.*{dropped}"):
        restore_training(ckpt, *_trained(1))
    ckpt = load_latest_checkpoint(tmp_path)
    assert ckpt is not None
    ckpt.model_state["extra.weight"] = paddle.zeros([2])
    with pytest.raises(CheckpointError, match=r"extra\.weight"):
        restore_training(ckpt, *_trained(1))


def test_remote_checkpoints_fall_back_and_are_pruned(
    s3_env: RunningS3Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = f"ck-{uuid.uuid4().hex[:12]}"
    minio.Minio(
        s3_env.endpoint, s3_env.access_key, s3_env.secret_key, secure=False, region="us-east-1"
    ).make_bucket(bucket)
    uri = f"s3://{bucket}/run/ckpt"
    marks = _save_steps(uri, (1, 2))
    storage.write_text(f"{uri}/step-00000002/{MODEL_FILE}", "overwritten behind our back")
    with caplog.at_level(logging.WARNING):
        ckpt = load_latest_checkpoint(uri)
    assert ckpt is not None and ckpt.step == 1 and ckpt.path == f"{uri}/step-00000001"
    np.testing.assert_array_equal(_first_weight(ckpt), marks[1])
    assert f"{uri}/step-00000002" in caplog.text

    model, opt = _trained(3)
    for step in (3, 4):
        save_checkpoint(uri, step, model, opt, {}, keep=2)
    assert latest_step(uri) == 4
    left = {u.split("/")[-2] for u in storage.list_uris(uri + "/")}
    assert left == {"step-00000003", "step-00000004"}
