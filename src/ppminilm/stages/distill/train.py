"""Stage 1: task-agnostic general distillation (MiniLMv2 relations + PP-MiniLM sample relations).

A randomly initialised student learns the Q/K/V self-attention relations of one teacher layer
(see :mod:`ppminilm.stages.distill.relations`) on the unlabelled corpus. The teacher is
frozen; its forward pass stops right after the distilled layer's V projection.

Runs on one device or data-parallel under Paddle's launcher (:mod:`.launch` starts it: one
process per GPU, or per CPU slot on the gloo backend): each rank takes its own slice of every
global batch, gradients are averaged by ``paddle.DataParallel``, only rank 0 writes checkpoints
and the output model.

Data parallelism and the sample relations: ``cfg.batch_size`` is the batch *per device*, and
each rank computes the relation loss on its own slice, as the seed does (PaddleNLP's
``general_distill.py`` under ``paddle.distributed.launch``, 8 GPUs x 128). The sample-to-sample
relation is a softmax over the samples of the *per-device* batch, so a run on 8 GPUs x 128 is
not the same objective as one device with 1024 (its sample softmax would span 1024 samples).
The loss that is logged and recorded is the mean over ranks, which is what the averaged
gradient descends. A checkpoint therefore only resumes on the same number of ranks
(:func:`check_resume_world_size`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ppminilm.compat.paddle import paddle, set_cpu_threads, set_seed
from ppminilm.config import DistillConfig
from ppminilm.contracts import LOSS_CURVE_FILE
from ppminilm.data.corpus import CorpusStream, corpus_fingerprint, encode_sentences
from ppminilm.data.tokenizer import load_tokenizer, vocab_size
from ppminilm.errors import ConfigError
from ppminilm.io import staged_dir, write_json
from ppminilm.modeling.accounting import count_params
from ppminilm.modeling.ernie import build_model
from ppminilm.modeling.saved import ModelInfo, load_pretrained, save_model
from ppminilm.stages.distill.relations import QKVCapture, RelationWeights, relation_distill_loss
from ppminilm.training.checkpoint import (
    Preempted,
    PreemptionGuard,
    load_latest_checkpoint,
    restore_training,
    save_checkpoint,
    step_seed,
)
from ppminilm.training.lease import CheckpointLease, run_id_for
from ppminilm.training.loop import StepLogger, make_optimizer

logger = logging.getLogger(__name__)

#: Initial loss scale of the AMP GradScaler (Paddle's default is 2**15).
AMP_INIT_LOSS_SCALING = 2.0**15


def _dist_env() -> tuple[int, int]:
    """``(rank, world_size)``; initialises the process group when launched multi-process."""
    world = paddle.distributed.get_world_size()
    if world > 1:
        paddle.distributed.init_parallel_env()
    return paddle.distributed.get_rank(), world


class StudentQKV(paddle.nn.Layer):
    """The student up to the distilled layer's Q/K/V projections, as one Layer.

    Its outputs are exactly the tensors the loss uses, which ``paddle.DataParallel`` needs:
    wrapped around the whole encoder (whose outputs, the last hidden states and the pooler,
    the loss never reaches), its reducer waits for gradients that never come and skips the
    all-reduce without a word, so each rank steps with its own gradient (found by the 2-rank
    test: rank gradients differed by the other half-batch's share). The forward pass also
    stops after V, on every rank.
    """

    def __init__(self, student: paddle.nn.Layer, layer: int) -> None:
        super().__init__()
        self.student = student
        self._capture = QKVCapture(student, layer, stop_early=True)

    def forward(
        self, input_ids: paddle.Tensor, token_type_ids: paddle.Tensor
    ) -> tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """Captured ``(q, k, v)``, each ``[bs, seq, H]``."""
        return self._capture(input_ids=input_ids, token_type_ids=token_type_ids)

    def remove(self) -> None:
        """Remove the capture hooks."""
        self._capture.remove()


def load_teacher(teacher_dir: str | os.PathLike[str]) -> paddle.nn.Layer:
    """Load the frozen teacher encoder from a ppminilm model dir or a paddlenlp pretrained dir.

    Raises:
        ModelFormatError: If the directory is neither.
    """
    teacher = load_pretrained(Path(teacher_dir), kind="encoder")
    teacher.eval()
    for p in teacher.parameters():
        p.stop_gradient = True
    return teacher


def _use_amp(cfg: DistillConfig) -> bool:
    if not cfg.use_amp:
        return False
    if "gpu" not in str(paddle.get_device()):
        logger.warning(
            "use_amp=True ignored: AMP needs a GPU, this run is on %s", paddle.get_device()
        )
        return False
    return True


def _amp_context(enabled: bool) -> contextlib.AbstractContextManager[Any]:
    return paddle.amp.auto_cast(enable=True, level="O1") if enabled else contextlib.nullcontext()


def _batches(
    stream: CorpusStream, tokenizer: Any, cfg: DistillConfig
) -> Iterator[dict[str, paddle.Tensor]]:
    pad_id = int(tokenizer.pad_token_id)
    while True:
        enc = encode_sentences(tokenizer, stream.next_sentences(cfg.batch_size), cfg.max_seq_len)
        ids = paddle.to_tensor(enc["input_ids"])
        yield {
            "input_ids": ids,
            "token_type_ids": paddle.to_tensor(enc["token_type_ids"]),
            "valid": ids != pad_id,
        }


def _any_rank(flag: bool, world: int) -> bool:
    """True if ``flag`` is set on any rank (so every rank stops at the same step)."""
    if world == 1:
        return flag
    t = paddle.to_tensor([1 if flag else 0], dtype="int32")
    paddle.distributed.all_reduce(t, op=paddle.distributed.ReduceOp.MAX)
    return bool(t.item())


def _rank_mean(values: list[paddle.Tensor], world: int) -> list[float]:
    """Mean over ranks of scalar tensors (one all-reduce for all of them)."""
    stacked = paddle.stack([v.detach().astype("float32").reshape([]) for v in values])
    if world > 1:
        paddle.distributed.all_reduce(stacked)  # SUM
        stacked = stacked / world
    return [float(x) for x in stacked.numpy()]


def grad_global_norm(parameters: list[paddle.Tensor]) -> float | None:
    """L2 norm over all gradients (after DataParallel's averaging, before clipping).

    ``None`` when a gradient overflowed (under AMP the scaler then skips the step).
    """
    squares = [
        paddle.sum(paddle.square(p.grad.astype("float32")))
        for p in parameters
        if p.grad is not None
    ]
    if not squares:
        return 0.0
    value = float(paddle.sqrt(paddle.add_n(squares)).item())
    return value if math.isfinite(value) else None


def check_resume_world_size(ckpt_path: str, state: dict[str, Any], world: int, bs: int) -> None:
    """Refuse to resume a checkpoint written by a different number of data-parallel ranks.

    The global batch (ranks x ``batch_size``), the per-device sample relations and the data
    position (every rank's slice of each global block) all depend on the rank count, so a
    "resumed" run on another GPU count would silently train a different objective.

    Raises:
        ConfigError: Naming the checkpoint, both rank counts and what to do.
    """
    saved = state.get("world_size", state.get("data", {}).get("world_size", 1))
    if int(saved) == world:
        return
    raise ConfigError(
        f"checkpoint {ckpt_path} was written by {saved} data-parallel process(es) (one per "
        f"GPU: global batch {saved} x {bs}) but this run has {world} ({world} x {bs}): "
        "resuming would change the global batch, the per-device sample relations and the data "
        f"order mid-run. Resume with {saved} GPU(s) in total (nodes x gpus_per_node) or "
        "start from a fresh checkpoint_uri"
    )


#: Config fields that may change between a checkpoint and the run resuming from it.
RESUMABLE_CHANGES = ("save_steps", "logging_steps")


def _config_changes(saved: dict[str, Any], cfg: DistillConfig) -> list[str]:
    now = cfg.to_dict()
    return sorted(
        k
        for k in set(saved) | set(now)
        if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k)
    )


def _save_student(
    student: paddle.nn.Layer,
    out: Path,
    arch: Any,
    tokenizer_dir: Any,
    provenance: dict[str, Any],
    curve: list[dict[str, Any]],
) -> None:
    """Model + loss curve written to a temp dir, then moved into ``out`` (all or nothing)."""
    with staged_dir(out, replace=True, kind="model") as staged:
        save_model(
            student,
            staged,
            ModelInfo(arch=arch, kind="encoder"),
            tokenizer_dir=tokenizer_dir,
            provenance=provenance,
        )
        write_json(staged / LOSS_CURVE_FILE, curve)


@contextlib.contextmanager
def _checkpoint_lease(
    checkpoint_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    run_id: str | None,
    rank: int,
) -> Iterator[CheckpointLease | None]:
    """Hold the lease of ``checkpoint_dir`` on rank 0 (the only writer) for the block."""
    if checkpoint_dir is None or rank != 0:
        yield None
        return
    with CheckpointLease(checkpoint_dir, run_id or run_id_for(out_dir)) as lease:
        from ppminilm import storage

        storage.abort_uploads(str(checkpoint_dir).rstrip("/") + "/")  # of a killed run
        yield lease


def run_distill(
    corpus_dir: str | os.PathLike[str],
    teacher_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: DistillConfig,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    vocab_dir: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Distil a student encoder from a teacher's Q/K/V relations on a sentence corpus.

    Resumes from the newest complete checkpoint in ``checkpoint_dir`` if there is one. On
    SIGTERM the current step finishes, a checkpoint is written (when ``checkpoint_dir`` is set)
    and :class:`~ppminilm.training.checkpoint.Preempted` (exit code 143) is raised.

    Args:
        corpus_dir: Directory of ``*.txt`` shards, one sentence a line.
        teacher_dir: Teacher: a ppminilm model dir (``save_model``, any kind) or a local
            paddlenlp pretrained dir (``roberta-wwm-ext-large``).
        out_dir: Where the student encoder is saved (``save_model`` layout, kind ``encoder``,
            plus ``loss_curve.json``).
        cfg: Distillation config; ``cfg.student.vocab_size`` is replaced by the tokenizer's.
        checkpoint_dir: Local directory or ``s3://`` URI for checkpoints (None: no checkpoints).
        vocab_dir: Tokenizer directory (default: ``teacher_dir``, which save_model fills).
        run_id: Id of this run for the checkpoint lease (default:
            :func:`~ppminilm.training.lease.run_id_for` of ``out_dir``): a retry with the same
            id resumes at once, another run is refused while the lease lives.

    Returns:
        Summary: ``model_dir``, ``final_loss`` (mean of the last logging window),
        ``loss_parts`` (last step's normalised token/head/sample terms), ``steps``,
        ``resumed_from_step``, ``seconds``, ``world_size``, ``amp``, ``params``, ``teacher``.

    Raises:
        ValueError: On a bad config (e.g. relation heads not dividing the teacher width).
        FileNotFoundError: If the corpus or tokenizer directory is missing.
        Preempted: After SIGTERM.
        CheckpointLeaseError: If another run holds ``checkpoint_dir``.
        CheckpointError: If no checkpoint there is intact, or one does not fit the student.
    """
    started = time.perf_counter()
    rank, world = _dist_env()
    set_cpu_threads(cfg.num_threads, share=world)  # ranks on one node share its CPUs
    tokenizer = load_tokenizer(vocab_dir or teacher_dir)
    teacher = load_teacher(teacher_dir)
    t_capture = QKVCapture(teacher, cfg.teacher_layer, stop_early=True)
    if t_capture.hidden_size % cfg.num_relation_heads:
        raise ValueError(
            f"DistillConfig.num_relation_heads={cfg.num_relation_heads} must divide "
            f"the teacher's hidden size {t_capture.hidden_size} ({teacher_dir})"
        )
    arch = cfg.student.replace(vocab_size=vocab_size(tokenizer))
    set_seed(cfg.seed)  # same student init on every rank (DataParallel also broadcasts it)
    student = build_model(arch, "encoder")
    student.train()
    optimizer, scheduler = make_optimizer(
        student,
        cfg.learning_rate,
        cfg.max_steps,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
    )
    amp = _use_amp(cfg)
    scaler = paddle.amp.GradScaler(init_loss_scaling=AMP_INIT_LOSS_SCALING) if amp else None
    stream = CorpusStream(corpus_dir, cfg.seed, rank=rank, world_size=world)

    with _checkpoint_lease(checkpoint_dir, out_dir, run_id, rank) as lease:
        start_step, curve = 0, []
        ckpt = load_latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
        if ckpt is not None:
            check_resume_world_size(ckpt.path, ckpt.state, world, cfg.batch_size)
            changed = _config_changes(ckpt.state.get("config", {}), cfg)
            if changed:
                raise ValueError(
                    f"checkpoint {ckpt.path} was written with another DistillConfig "
                    f"(fields {changed} differ); use a fresh checkpoint_dir or the "
                    "same config"
                )
            restore_training(ckpt, student, optimizer, scaler)
            stream.load_state_dict(ckpt.state["data"])
            start_step, curve = ckpt.step, list(ckpt.state.get("loss_curve", []))
            logger.info("resuming from checkpoint %s at step %d", ckpt.path, start_step)
        if start_step >= cfg.max_steps:
            logger.info("checkpoint is already at max_steps=%d", cfg.max_steps)

        s_capture = StudentQKV(student, cfg.student_layer)
        forward: paddle.nn.Layer = s_capture
        if world > 1:
            # Only the distilled layer's Q/K/V feed the loss: its attention output, FFN, the
            # layers above and the pooler get no gradient, hence find_unused_parameters.
            forward = paddle.DataParallel(s_capture, find_unused_parameters=True)
        weights = RelationWeights(cfg.alpha, cfg.beta)
        step_log = StepLogger(total=cfg.max_steps, every=cfg.logging_steps, name="distill")
        window: list[float] = []
        parts: dict[str, float] = {}

        def trainer_state() -> dict[str, Any]:
            return {
                "data": stream.state_dict(),
                "loss_curve": curve,
                "config": cfg.to_dict(),
                "teacher": str(teacher_dir),
                "world_size": world,
            }

        def checkpoint(step: int) -> str | None:
            if checkpoint_dir is None or rank != 0:
                return None
            return save_checkpoint(
                checkpoint_dir, step, student, optimizer, trainer_state(), scaler=scaler
            )

        batches = _batches(stream, tokenizer, cfg)
        step = start_step
        with PreemptionGuard() as guard:
            for step in range(start_step + 1, cfg.max_steps + 1):
                if lease is not None:
                    lease.keep_alive()
                batch = next(batches)
                # Dropout masks depend on (seed, step, rank) only, so a resumed run draws the same.
                paddle.seed(step_seed(cfg.seed, step, rank))
                inputs = {
                    "input_ids": batch["input_ids"],
                    "token_type_ids": batch["token_type_ids"],
                }
                with _amp_context(amp):
                    with paddle.no_grad():
                        t_qkv = t_capture(**inputs)
                    s_qkv = forward(**inputs)
                # Outside auto_cast: the relation softmaxes stay in float32 (see relations.py).
                loss, part_tensors = relation_distill_loss(
                    s_qkv, t_qkv, batch["valid"], cfg.num_relation_heads, weights
                )
                log_now = step % cfg.logging_steps == 0 or step == cfg.max_steps
                grad_norm = None
                if scaler is not None:
                    scaler.scale(loss).backward()
                    if log_now:
                        scaler.unscale_(optimizer)  # step() then does not unscale again
                        grad_norm = grad_global_norm(student.parameters())
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    if log_now:
                        grad_norm = grad_global_norm(student.parameters())
                    optimizer.step()
                scheduler.step()
                optimizer.clear_grad()
                # The recorded loss is the mean over ranks (each rank's own batch slice).
                names = list(part_tensors)
                means = _rank_mean([loss, *(part_tensors[n] for n in names)], world)
                loss_value = means[0]
                window.append(loss_value)
                step_log.update(step, loss_value, lr=optimizer.get_lr())
                if log_now:
                    parts = dict(zip(names, means[1:], strict=True))
                    point: dict[str, Any] = {
                        "step": step,
                        "loss": sum(window) / len(window),
                        **parts,
                    }
                    point["grad_norm"] = grad_norm  # before clipping; None: AMP overflow step
                    curve.append(point)
                    window = []
                if _any_rank(guard.requested, world):
                    saved = checkpoint(step)
                    if world > 1:
                        # Every rank exits together once rank 0's checkpoint is complete: the
                        # launcher stops the remaining ranks a few seconds after the first exits.
                        paddle.distributed.barrier()
                    if checkpoint_dir is None:
                        logger.warning(
                            "pre-empted at step %d with no checkpoint_dir: progress is lost", step
                        )
                    raise Preempted(step, saved)
                if step % cfg.save_steps == 0 and step < cfg.max_steps:
                    checkpoint(step)
        s_capture.remove()
        t_capture.remove()
        if window:
            curve.append({"step": step, "loss": sum(window) / len(window), **parts})
        final_loss = curve[-1]["loss"] if curve else float("nan")

        out = Path(out_dir)
        summary: dict[str, Any] = {
            "model_dir": str(out),
            "final_loss": final_loss,
            "loss_parts": parts,
            "steps": cfg.max_steps,
            "resumed_from_step": start_step,
            "seconds": round(time.perf_counter() - started, 2),
            "world_size": world,
            "rank": rank,
            "batch_size_per_device": cfg.batch_size,
            "global_batch_size": cfg.batch_size * world,
            "amp": amp,
            "teacher": str(teacher_dir),
            "vocab_size": arch.vocab_size,
        }
        if rank == 0:
            if start_step < cfg.max_steps:
                # A retry pre-empted while saving the model then only has to re-save it.
                checkpoint(cfg.max_steps)
            provenance = {
                "stage": "distill",
                "config": cfg.to_dict(),
                "parent": str(teacher_dir),
                "corpus": str(corpus_dir),
                "corpus_fingerprint": corpus_fingerprint(corpus_dir),
                "final_loss": final_loss,
                "resumed_from_step": start_step,
            }
            _save_student(student, out, arch, vocab_dir or teacher_dir, provenance, curve)
        summary["params"] = count_params(arch)
        logger.info("distillation done: final loss %.4f in %.1f s", final_loss, summary["seconds"])
        return summary
