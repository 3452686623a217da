"""Training checkpoints: atomic save, resume from the newest complete one, SIGTERM pre-emption.

A checkpoint is a directory ``step-XXXXXXXX/`` inside the checkpoint directory holding

    model.pdparams        student weights
    optimizer.pdopt       AdamW moments + LR scheduler, keyed by structured parameter names
    amp_scaler.json       GradScaler state (AMP runs only)
    rng.pkl               Python / NumPy RNG states (Paddle is reseeded every step instead)
    trainer_state.json    step, data position, loss curve so far, free-form extras

    checksums.json        size and sha256 of every file above (local checkpoints)

Locally it is written to a hidden temp directory and renamed into place, so a directory named
``step-*`` is always complete. If the checkpoint directory is an ``s3://`` URI the checkpoint is
staged locally and published with :func:`ppminilm.storage.upload_dir`, whose ``_SUCCESS``
manifest (sizes and sha256 too) is written last; only prefixes with that manifest count as
checkpoints. Checkpoints beyond ``keep`` are deleted, local and remote.

Resuming (:func:`load_latest_checkpoint`) takes the newest checkpoint that reads back intact:
one whose files fail their checksums or cannot be parsed is skipped with a warning naming it,
and the next older one is used; if none is intact that is an error naming each. The restored
tensors must match the model exactly (:func:`restore_training`): a missing, extra or
differently shaped tensor is an error, never a silently skipped weight.

The training loop holds a :class:`~ppminilm.training.lease.CheckpointLease` on the directory,
so a second run cannot write into it at the same time.

Optimizer state is saved under structured names (``encoder.layers.0.linear1.weight``) rather
than Paddle's generated ones (``linear_12.w_0``), which depend on how many layers the process
created before: a resumed process loads the teacher first too, but callers in a long-lived
process (tests, notebooks) would otherwise silently lose the moments.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
import signal
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ppminilm.compat.paddle import load_state_file, paddle
from ppminilm.errors import EXIT_PREEMPTED, InfraError, Terminated, UserError
from ppminilm.io import is_remote, read_json_file, staged_dir, write_json

logger = logging.getLogger(__name__)

CKPT_PREFIX = "step-"
MODEL_FILE = "model.pdparams"
OPTIMIZER_FILE = "optimizer.pdopt"
SCALER_FILE = "amp_scaler.json"
RNG_FILE = "rng.pkl"
STATE_FILE = "trainer_state.json"
CHECKSUM_FILE = "checksums.json"
_STEP_RE = re.compile(rf"{CKPT_PREFIX}(\d+)$")
#: Exit status of a pre-empted run (128 + SIGTERM), what Kubernetes and shells expect.
PREEMPTED_EXIT_CODE = EXIT_PREEMPTED


class Preempted(Terminated):
    """The run received SIGTERM, saved a checkpoint (if it had a directory) and stops.

    A ``SystemExit`` subclass: uncaught, the process exits with ``PREEMPTED_EXIT_CODE`` so the
    orchestrator retries the step, which then resumes from the checkpoint.
    """

    def __init__(self, step: int, checkpoint: str | None) -> None:
        super().__init__(signal.SIGTERM)
        self.step = step
        self.checkpoint = checkpoint


class CheckpointError(UserError):
    """No checkpoint of a directory is intact, or one does not fit the model being trained."""


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    step: int
    path: str
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    rng: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    scaler_state: dict[str, Any] | None = None


# --------------------------------------------------------------------------- RNG + optimizer


def capture_rng() -> dict[str, Any]:
    """Python and NumPy RNG states (picklable).

    Paddle's generator is not saved: on paddle 2.6 a pickled ``GeneratorState`` keeps only
    ``(device, seed, offset)``, not the CPU engine's position, so restoring it would silently
    restart the stream. Training loops instead reseed Paddle every step with
    :func:`step_seed`, which makes its state a function of the step alone.
    """
    return {"python": random.getstate(), "numpy": np.random.get_state()}


def restore_rng(rng: dict[str, Any]) -> None:
    """Restore RNG states saved by :func:`capture_rng`."""
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A distinct Paddle seed per (run seed, step, rank): dropout is reproducible on resume."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _param_names(model: paddle.nn.Layer) -> list[tuple[str, str]]:
    """``(generated name, structured name)``, longest generated name first."""
    pairs = [(p.name, n) for n, p in model.named_parameters()]
    return sorted(pairs, key=lambda x: -len(x[0]))


def portable_optimizer_state(optimizer: Any, model: paddle.nn.Layer) -> dict[str, Any]:
    """Optimizer state with accumulator keys renamed to structured parameter names."""
    names = _param_names(model)
    out: dict[str, Any] = {}
    for key, value in optimizer.state_dict().items():
        if key in ("LR_Scheduler", "master_weights"):
            out[key] = value
            continue
        for generated, structured in names:
            if key.startswith(generated + "_"):
                key = f"{structured}::{key[len(generated) + 1 :]}"
                break
        out[key] = value
    return out


def load_portable_optimizer_state(
    optimizer: Any, model: paddle.nn.Layer, state: dict[str, Any]
) -> None:
    """Inverse of :func:`portable_optimizer_state` into this process's parameter names."""
    by_structured = {structured: generated for generated, structured in _param_names(model)}
    native: dict[str, Any] = {}
    for key, value in state.items():
        if "::" in key:
            structured, rest = key.split("::", 1)
            if structured not in by_structured:
                raise ValueError(f"optimizer state has parameter {structured!r} the model lacks")
            key = f"{by_structured[structured]}_{rest}"
        native[key] = value
    optimizer.set_state_dict(native)


# --------------------------------------------------------------------------- save / load


def _write_local(
    tmp: Path, step: int, model: paddle.nn.Layer, optimizer: Any, state: dict[str, Any], scaler: Any
) -> None:
    paddle.save(model.state_dict(), str(tmp / MODEL_FILE))
    paddle.save(portable_optimizer_state(optimizer, model), str(tmp / OPTIMIZER_FILE))
    if scaler is not None:
        write_json(tmp / SCALER_FILE, scaler.state_dict())
    with open(tmp / RNG_FILE, "wb") as fh:
        pickle.dump(capture_rng(), fh)
    write_json(tmp / STATE_FILE, {"step": step, **state})
    write_json(tmp / CHECKSUM_FILE, _checksums(tmp))


def _checksums(root: Path) -> dict[str, dict[str, Any]]:
    from ppminilm.storage.s3 import file_sha256

    return {
        p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(root.iterdir())
        if p.is_file() and p.name != CHECKSUM_FILE and not p.name.startswith(".")
    }


def _verify_checksums(path: Path) -> None:
    """Raise ``CheckpointError`` if a file differs from ``checksums.json`` (when present)."""
    record = path / CHECKSUM_FILE
    if not record.is_file():
        return  # written before checksums were recorded
    expected = read_json_file(record, CheckpointError)
    actual = _checksums(path)
    for name, entry in expected.items():
        if actual.get(name) != entry:
            raise CheckpointError(f"{path / name}: size/sha256 differ from {CHECKSUM_FILE}")


def save_checkpoint(
    checkpoint_dir: str | os.PathLike[str],
    step: int,
    model: paddle.nn.Layer,
    optimizer: Any,
    state: dict[str, Any],
    *,
    scaler: Any = None,
    keep: int = 2,
) -> str:
    """Write a complete checkpoint for ``step`` (atomically) and prune old local ones.

    Args:
        checkpoint_dir: Local directory or ``s3://`` URI prefix.
        step: Optimizer steps done.
        model: The trained model (unwrapped from ``DataParallel``).
        optimizer: Its optimizer (the LR scheduler state is part of it).
        state: JSON-able trainer state (data position, loss curve, config...).
        scaler: AMP ``GradScaler`` or None.
        keep: Local checkpoints to keep (newest first); 0 keeps all.

    Returns:
        Path or URI of the checkpoint.
    """
    name = f"{CKPT_PREFIX}{step:08d}"
    target = str(checkpoint_dir)
    if is_remote(target):
        from ppminilm import storage

        with tempfile.TemporaryDirectory(prefix="ppminilm-ckpt-") as tmp:
            _write_local(Path(tmp), step, model, optimizer, state, scaler)
            uri = target.rstrip("/") + "/" + name
            storage.upload_dir(tmp, uri)
        if keep > 0:
            for old in sorted(_remote_steps(target))[:-keep]:
                storage.remove_tree(f"{target.rstrip('/')}/{CKPT_PREFIX}{old:08d}")
        logger.info("checkpoint step %d -> %s", step, uri)
        return uri
    root = Path(target)
    final = root / name
    with staged_dir(final, replace=True, kind="checkpoint") as tmp_dir:
        _write_local(tmp_dir, step, model, optimizer, state, scaler)
    if keep > 0:
        for old in sorted(_local_steps(root))[:-keep]:
            shutil.rmtree(root / f"{CKPT_PREFIX}{old:08d}", ignore_errors=True)
    logger.info("checkpoint step %d -> %s", step, final)
    return str(final)


def _local_steps(root: Path) -> list[int]:
    steps = []
    if root.is_dir():
        for p in root.iterdir():
            m = _STEP_RE.match(p.name)
            if m and p.is_dir() and (p / STATE_FILE).is_file():
                steps.append(int(m.group(1)))
    return steps


def _remote_steps(prefix: str) -> list[int]:
    from ppminilm import storage

    base = prefix.rstrip("/") + "/"
    steps = []
    for uri in storage.list_uris(base):
        rel = uri[len(base) :] if uri.startswith(base) else uri
        parts = rel.split("/")
        if len(parts) == 2 and parts[1] == storage.SUCCESS_MARKER:
            m = _STEP_RE.match(parts[0])
            if m:
                steps.append(int(m.group(1)))
    return steps


def latest_step(checkpoint_dir: str | os.PathLike[str]) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    target = str(checkpoint_dir)
    steps = _remote_steps(target) if is_remote(target) else _local_steps(Path(target))
    return max(steps) if steps else None


def _read_local(path: Path, step: int) -> Checkpoint:
    _verify_checksums(path)
    with open(path / RNG_FILE, "rb") as fh:
        rng = pickle.load(fh)  # our own file, written by save_checkpoint
    scaler = (
        read_json_file(path / SCALER_FILE, CheckpointError)
        if (path / SCALER_FILE).is_file()
        else None
    )
    state = read_json_file(path / STATE_FILE, CheckpointError)
    if not isinstance(state, dict) or state.get("step") != step:
        raise CheckpointError(f"{path / STATE_FILE}: expected an object with 'step': {step}")
    return Checkpoint(
        step=step,
        path=str(path),
        model_state=load_state_file(path / MODEL_FILE, CheckpointError),
        optimizer_state=load_state_file(path / OPTIMIZER_FILE, CheckpointError),
        rng=rng,
        state=state,
        scaler_state=scaler,
    )


def _load_step(target: str, step: int) -> Checkpoint:
    name = f"{CKPT_PREFIX}{step:08d}"
    if is_remote(target):
        from ppminilm import storage

        uri = target.rstrip("/") + "/" + name
        with tempfile.TemporaryDirectory(prefix="ppminilm-ckpt-") as tmp:
            storage.download_dir(uri, Path(tmp, name))
            ckpt = _read_local(Path(tmp, name), step)
        ckpt.path = uri
        return ckpt
    return _read_local(Path(target) / name, step)


def load_latest_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> Checkpoint | None:
    """Load the newest intact checkpoint, or return None if there is none at all.

    A checkpoint whose files are damaged (checksums, truncated or unparsable files, a remote
    one that does not match its manifest) is skipped with a warning naming it; the next older
    one is tried.

    Raises:
        CheckpointError: If checkpoints exist but none is intact (names each and why).
        StorageError: If object storage fails (that is not damage: nothing is skipped).
    """
    target = str(checkpoint_dir)
    steps = _remote_steps(target) if is_remote(target) else _local_steps(Path(target))
    bad: list[str] = []
    for step in sorted(steps, reverse=True):
        where = f"{target.rstrip('/')}/{CKPT_PREFIX}{step:08d}"
        try:
            ckpt = _load_step(target, step)
        except InfraError as exc:
            from ppminilm.storage import IncompleteArtifactError

            if not isinstance(exc, IncompleteArtifactError):  # an outage is not damage
                raise
            reason = str(exc)
            logger.warning("checkpoint %s is damaged (%s); trying an older one", where, reason)
            bad.append(f"{where}: {reason}")
            continue
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            logger.warning("checkpoint %s is damaged (%s); trying an older one", where, reason)
            bad.append(f"{where}: {reason}")
            continue
        if bad:
            logger.warning("resuming from %s instead of the damaged newer checkpoint(s)", where)
        return ckpt
    if bad:
        raise CheckpointError(
            f"{target}: no intact checkpoint ({'; '.join(bad)}); remove the damaged ones to "
            "start over"
        )
    return None


def _check_tensors(ckpt: Checkpoint, model: paddle.nn.Layer) -> None:
    """Raise ``CheckpointError`` unless the checkpoint has exactly the model's tensors."""
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    saved = {k: list(getattr(v, "shape", [])) for k, v in ckpt.model_state.items()}
    where = f"{ckpt.path}/{MODEL_FILE}"
    missing = sorted(set(own) - set(saved))
    if missing:
        raise CheckpointError(
            f"{where}: lacks {len(missing)} tensor(s) of the model, e.g. {missing[0]!r}"
        )
    extra = sorted(set(saved) - set(own))
    if extra:
        raise CheckpointError(
            f"{where}: has {len(extra)} tensor(s) the model lacks, e.g. {extra[0]!r}"
        )
    wrong = [k for k in own if own[k] != saved[k]]
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{where}: tensor {k!r} has shape {saved[k]} but the model needs {own[k]} "
            f"({len(wrong)} tensor(s) differ): the checkpoint is of another architecture"
        )


def restore_training(
    ckpt: Checkpoint, model: paddle.nn.Layer, optimizer: Any, scaler: Any = None
) -> None:
    """Load a checkpoint's model, optimizer (+ scheduler), scaler and RNG states in place.

    Raises:
        CheckpointError: If the checkpoint's tensors are not exactly the model's (names,
            shapes) or its optimizer state names parameters the model lacks.
    """
    _check_tensors(ckpt, model)
    model.set_state_dict(ckpt.model_state)
    try:
        load_portable_optimizer_state(optimizer, model, ckpt.optimizer_state)
    except ValueError as exc:
        raise CheckpointError(f"{ckpt.path}/{OPTIMIZER_FILE}: {exc}") from None
    if scaler is not None and ckpt.scaler_state is not None:
        scaler.load_state_dict(ckpt.scaler_state)
    restore_rng(ckpt.rng)


# --------------------------------------------------------------------------- SIGTERM


class PreemptionGuard:
    """Context manager that turns SIGTERM into a flag the training loop polls between steps.

    The handler only sets a flag: the step in flight finishes, then the loop saves a checkpoint
    at that step and raises :class:`Preempted`. The previous handler is restored on exit.
    Outside the main thread (where signals cannot be installed) it is inert.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, _frame: types.FrameType | None) -> None:
        logger.warning(
            "received signal %d: will checkpoint after the current step and exit", signum
        )
        self.requested = True

    def __enter__(self) -> PreemptionGuard:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        except ValueError:  # not the main thread
            logger.debug("SIGTERM handler not installed (not the main thread)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False
