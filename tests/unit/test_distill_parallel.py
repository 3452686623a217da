"""Data-parallel distillation: a real 2-rank run on CPU (gloo) through Paddle's launcher.

The same code path as the 8-GPU step (:func:`ppminilm.stages.distill.launch.run_distill_processes`
-> ``paddle.distributed.launch`` -> ``ppminilm distill`` on every rank -> ``paddle.DataParallel``),
with two CPU processes on the gloo backend. With dropout off, its first step must equal one
process that computes the relation loss on each half of the global batch separately (the sample
relations are a softmax over the per-device batch, as in the seed) and averages the two:

* the recorded loss is the mean of the two half-batch losses (all-reduced over ranks);
* the gradient norm before clipping is that of the averaged loss (a rank summing instead of
  averaging, or computing relations over the whole batch, changes it);
* the weights after the first AdamW update are the reference's (a rank that skipped the
  gradient all-reduce, or saw the other rank's data, would update with another sign pattern).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ppminilm.compat.paddle import paddle, set_seed
from ppminilm.data.corpus import CorpusStream, encode_sentences
from ppminilm.data.tokenizer import load_tokenizer, vocab_size
from ppminilm.errors import ConfigError
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import load_model
from ppminilm.stages.distill.launch import (
    exit_code_for,
    launcher_command,
    run_distill_processes,
)
from ppminilm.stages.distill.relations import QKVCapture, RelationWeights, relation_distill_loss
from ppminilm.stages.distill.train import LOSS_CURVE_FILE, grad_global_norm, load_teacher
from ppminilm.training.checkpoint import latest_step
from ppminilm.training.loop import make_optimizer
from tests.unit.test_distill import STUDENT, _cfg, tiny  # noqa: F401 -- fixture reused

#: Loss and gradient norm of the 2-rank run vs the half-batch reference: float32 sums in
#: another order (gloo's all-reduce) and nothing else.
LOSS_RTOL = 1e-5
#: Weights after the first update (AdamW moves each weight by ~lr = 5e-3; a wrong sign moves
#: it by 1e-2): float noise only.
WEIGHT_ATOL = 1e-6
RANKS = 2
PER_RANK_BATCH = 6


def _parallel_cfg(**changes):
    base = {
        "student": {**STUDENT, "dropout": 0.0},
        "batch_size": PER_RANK_BATCH,
        "warmup_steps": 0,  # the first step then runs at the peak rate (warm-up starts at 0)
        "logging_steps": 1,
    }
    return _cfg(**{**base, **changes})


def _reference_first_step(data: dict, cfg) -> tuple[float, float, dict[str, np.ndarray]]:
    """One process: loss on each half of the global batch, averaged; one AdamW update."""
    tokenizer = load_tokenizer(data["teacher"])
    teacher = load_teacher(data["teacher"])
    set_seed(cfg.seed)  # run_distill seeds after loading the teacher, then builds the student
    student = build_model(cfg.student.replace(vocab_size=vocab_size(tokenizer)), "encoder")
    student.train()
    optimizer, _ = make_optimizer(
        student,
        cfg.learning_rate,
        cfg.max_steps,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
    )
    block = CorpusStream(data["corpus"], cfg.seed).next_sentences(RANKS * cfg.batch_size)
    t_cap = QKVCapture(teacher, cfg.teacher_layer, stop_early=True)
    s_cap = QKVCapture(student, cfg.student_layer, stop_early=True)
    losses = []
    for r in range(RANKS):
        half = block[r * cfg.batch_size : (r + 1) * cfg.batch_size]
        enc = encode_sentences(tokenizer, half, cfg.max_seq_len)
        ids = paddle.to_tensor(enc["input_ids"])
        inputs = {"input_ids": ids, "token_type_ids": paddle.to_tensor(enc["token_type_ids"])}
        with paddle.no_grad():
            t_qkv = t_cap(**inputs)
        loss, _ = relation_distill_loss(
            s_cap(**inputs),
            t_qkv,
            ids != int(tokenizer.pad_token_id),
            cfg.num_relation_heads,
            RelationWeights(cfg.alpha, cfg.beta),
        )
        losses.append(loss)
    mean = (losses[0] + losses[1]) / RANKS
    mean.backward()
    norm = grad_global_norm(student.parameters())
    assert norm is not None
    optimizer.step()
    return float(mean.item()), norm, {n: p.numpy() for n, p in student.named_parameters()}


@pytest.mark.integration
def test_two_rank_gloo_run_matches_half_batch_reference(tiny, tmp_path: Path) -> None:  # noqa: F811
    cfg = _parallel_cfg(max_steps=1)
    out = tmp_path / "student"
    summary = run_distill_processes(
        tiny["corpus"],
        tiny["teacher"],
        out,
        cfg,
        nproc=RANKS,
        device="cpu",
        checkpoint_dir=str(tmp_path / "ckpt"),
        env={"OMP_NUM_THREADS": "1"},
    )
    assert summary["world_size"] == RANKS and summary["rank"] == 0
    assert summary["global_batch_size"] == RANKS * PER_RANK_BATCH
    assert latest_step(tmp_path / "ckpt") == 1
    (first,) = json.loads((out / LOSS_CURVE_FILE).read_text())

    ref_loss, ref_norm, ref_weights = _reference_first_step(tiny, cfg)
    assert first["loss"] == pytest.approx(ref_loss, rel=LOSS_RTOL)
    assert summary["final_loss"] == pytest.approx(ref_loss, rel=LOSS_RTOL)
    assert first["grad_norm"] == pytest.approx(ref_norm, rel=LOSS_RTOL)
    model, _ = load_model(out)
    got = dict(model.named_parameters())
    assert set(got) == set(ref_weights)
    moved = 0
    for name, ref in ref_weights.items():
        np.testing.assert_allclose(got[name].numpy(), ref, atol=WEIGHT_ATOL, err_msg=name)
    # The comparison is not vacuous: the first update moved the distilled layer's weights.
    fresh = _parallel_cfg(max_steps=1)
    set_seed(fresh.seed)
    vocab = vocab_size(load_tokenizer(tiny["teacher"]))
    init = build_model(fresh.student.replace(vocab_size=vocab), "encoder")
    for name, p in init.named_parameters():
        moved += int(np.abs(p.numpy() - ref_weights[name]).max() > 1e-3)
    assert moved > 0


@pytest.mark.integration
def test_resume_on_another_rank_count_is_refused(tiny, tmp_path: Path) -> None:  # noqa: F811
    cfg = _parallel_cfg(max_steps=2, save_steps=1)
    ckpt = str(tmp_path / "ckpt")
    run_distill_processes(
        tiny["corpus"],
        tiny["teacher"],
        tmp_path / "a",
        cfg,
        nproc=RANKS,
        device="cpu",
        checkpoint_dir=ckpt,
        env={"OMP_NUM_THREADS": "1"},
    )
    from ppminilm.stages.distill.train import run_distill

    longer = _parallel_cfg(max_steps=2, save_steps=1)
    with pytest.raises(ConfigError, match=r"written by 2 data-parallel process\(es\).*has 1"):
        run_distill(tiny["corpus"], tiny["teacher"], tmp_path / "b", longer, checkpoint_dir=ckpt)


def test_launcher_command_wraps_the_cli() -> None:
    cmd = launcher_command(8, ["--corpus", "c"], log_dir="/tmp/l", python="py")
    assert cmd[:5] == ["py", "-m", "paddle.distributed.launch", "--nproc_per_node", "8"]
    assert "--nnodes" not in cmd
    assert cmd[cmd.index("--log_dir") + 1] == "/tmp/l"
    assert cmd[-6:] == ["py", "-m", "ppminilm", "distill", "--corpus", "c"]
    multi = launcher_command(8, [], log_dir="l", nnodes=2)
    assert multi[multi.index("--nnodes") + 1] == "2"
    for bad in (0, True, "8"):
        with pytest.raises(ValueError, match="nproc_per_node"):
            launcher_command(bad, [], log_dir="l")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("returncode", "terminated", "expected"),
    [
        (0, False, 0),
        (0, True, 0),
        (15, True, 143),  # Paddle's launcher after our SIGTERM: retryable, not permanent
        (143, False, 143),  # a rank checkpointed after its own SIGTERM
        (-9, False, 137),
        (2, False, 2),  # a user error (e.g. refused resume): permanent
        (1, False, 1),
    ],
)
def test_exit_codes_tell_preemption_from_failure(returncode, terminated, expected) -> None:
    assert exit_code_for(returncode, terminated) == expected


@pytest.mark.integration
def test_sigterm_checkpoints_every_rank_and_the_run_resumes(tiny, tmp_path: Path) -> None:  # noqa: F811
    """SIGTERM to the step reaches the ranks (not Paddle's launcher): checkpoint, exit 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from ppminilm.training.checkpoint import PREEMPTED_EXIT_CODE

    steps = 80
    cfg = _parallel_cfg(max_steps=steps, save_steps=2, logging_steps=50)
    ckpt = tmp_path / "ckpt"
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    script = (
        "import json, sys\n"
        "from ppminilm.config import DistillConfig\n"
        "from ppminilm.stages.distill.launch import run_distill_processes\n"
        f"cfg = DistillConfig.from_dict(json.load(open({str(cfg_file)!r})))\n"
        f"run_distill_processes({str(tiny['corpus'])!r}, {str(tiny['teacher'])!r}, "
        f"{str(tmp_path / 'student')!r}, cfg, nproc=2, device='cpu', "
        f"checkpoint_dir={str(ckpt)!r}, env={{'OMP_NUM_THREADS': '1'}})\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 180
    while latest_step(ckpt) is None and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=180)
    assert child.returncode == PREEMPTED_EXIT_CODE, err[-3000:]
    killed_at = latest_step(ckpt)
    assert killed_at is not None and 0 < killed_at < steps
    state = json.loads((ckpt / f"step-{killed_at:08d}" / "trainer_state.json").read_text())
    assert state["world_size"] == RANKS

    resumed = run_distill_processes(
        tiny["corpus"],
        tiny["teacher"],
        tmp_path / "student",
        cfg,
        nproc=RANKS,
        device="cpu",
        checkpoint_dir=str(ckpt),
        env={"OMP_NUM_THREADS": "1"},
    )
    assert resumed["resumed_from_step"] == killed_at and resumed["steps"] == steps


def test_the_step_asks_for_gpus_and_never_launches_from_inside_a_rank(
    tiny,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ppminilm.errors import DeviceUnavailableError
    from ppminilm.runner import distill

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this paddle has CUDA")
    cfg = _parallel_cfg(max_steps=1).to_dict()
    kwargs = {"corpus": tiny["corpus"], "overrides": {"distill": cfg}, "gpus_per_node": 8}
    with pytest.raises(DeviceUnavailableError, match=r"gpus_per_node=8.*CPU-only build"):
        distill(tiny["teacher"], tmp_path / "s", **kwargs)
    # A rank of a launcher run (PADDLE_TRAINERS_NUM set) trains instead of launching again.
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    from ppminilm.runner import prepare

    assert prepare._in_launched_rank()
