"""Data-parallel distillation on one node: Paddle's launcher around ``ppminilm distill``.

One process per GPU (NCCL), or on a CPU-only paddle one per CPU slot (Paddle's launcher then
sets ``PADDLE_DISTRI_BACKEND=gloo``): the same command and the same training loop either way,
which is how the 2-rank CPU test exercises the GPU path. Used by

* the distill step with ``nodes == 1`` and ``gpus_per_node > 1`` (:func:`run_distill_processes`),
* every PaddleJob worker pod (``python -m ppminilm.stages.distill.launch --nnodes N ...``,
  :func:`main`), where the Training Operator provides ``PADDLE_MASTER`` and the node ranks.

This wrapper exists for two reasons. Paddle's launcher answers SIGTERM by stopping its ranks
with a 30 s clock and exiting 15, which a Training Operator ``ExitCode`` restart policy treats
as a permanent failure; here SIGTERM goes straight to the rank processes (each checkpoints at
the end of its step, see :class:`~ppminilm.training.checkpoint.PreemptionGuard`) and the wrapper
exits 143, which that policy retries (and the retry resumes from the checkpoint). Second, a
failed run names the failing rank and shows the tail of its log.

Paddle's launcher writes every rank's environment to ``<log_dir>/backup_env.<rank>.json``,
object-store keys included: the log directory is a private (0700) temporary directory unless
the caller names one, and it is removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.errors import EXIT_PREEMPTED, DeviceUnavailableError, InfraError

logger = logging.getLogger(__name__)

#: ``python -m`` name of this module (the PaddleJob worker command).
LAUNCH_MODULE = "ppminilm.stages.distill.launch"
#: Paddle's launcher names each rank's log ``workerlog.<local rank>``.
RANK_LOG_GLOB = "workerlog.*"
#: Lines of a failed rank's log quoted in the error.
LOG_TAIL_LINES = 25
DEVICES = ("gpu", "cpu")


class LaunchError(InfraError, RuntimeError):
    """The data-parallel run failed on some rank (the message names it and quotes its log)."""

    exit_code = 1


def launcher_command(
    nproc_per_node: int,
    distill_args: Sequence[str],
    *,
    log_dir: str | os.PathLike[str],
    nnodes: int | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command that runs ``ppminilm distill`` on ``nproc_per_node`` ranks of this node.

    Args:
        nproc_per_node: Ranks on this node (one per GPU).
        distill_args: Arguments after ``ppminilm distill``.
        log_dir: Where Paddle's launcher writes ``workerlog.<rank>``.
        nnodes: Nodes of a multi-node job (the Training Operator supplies ``PADDLE_MASTER``);
            None for a single node.
        python: Interpreter of the ranks.

    Returns:
        Exec-form command list.

    Raises:
        ValueError: If ``nproc_per_node`` or ``nnodes`` is not a positive integer.
    """
    for name, value in (("nproc_per_node", nproc_per_node), ("nnodes", nnodes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name}={value!r}: expected a positive integer")
        if value is not None and value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    cmd = [python, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc_per_node)]
    if nnodes is not None:
        cmd += ["--nnodes", str(nnodes)]
    cmd += ["--log_dir", str(log_dir)]
    # A non-.py "script" is run as an executable with the rest as its arguments.
    return [*cmd, python, "-m", "ppminilm", "distill", *distill_args]


def child_pids(parent: int) -> list[int]:
    """Process ids whose parent is ``parent`` (Linux ``/proc``; empty elsewhere)."""
    out = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = entry.read_text()
        except OSError:  # the process exited while we looked
            continue
        # Field 2 (comm) is parenthesised and may hold spaces; ppid follows the last ')'.
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            out.append(int(entry.parent.name))
    return sorted(out)


def exit_code_for(returncode: int, terminated: bool) -> int:
    """The wrapper's exit code for the launcher's ``returncode``.

    0 stays 0. After SIGTERM (ours, or a rank's own: 143) it is 143, which the Training
    Operator's ``ExitCode`` policy and KFP retries treat as retryable. A rank killed by a
    signal (negative code) becomes ``128 + signal``; anything else (2: a user error such as
    a refused resume) is passed through: permanent.
    """
    if returncode == 0:
        return 0
    if terminated or returncode in (EXIT_PREEMPTED, -signal.SIGTERM):
        return EXIT_PREEMPTED
    if returncode < 0:
        return 128 - returncode
    return returncode


@contextlib.contextmanager
def _forward_sigterm(proc: subprocess.Popen[bytes]) -> Iterator[dict[str, bool]]:
    """While active, SIGTERM/SIGINT go to the launcher's rank processes, not the launcher."""
    state = {"terminated": False}

    def handle(signum: int, _frame: types.FrameType | None) -> None:
        state["terminated"] = True
        ranks = child_pids(proc.pid)
        logger.warning(
            "signal %d: asking %d rank(s) to checkpoint and stop", signum, len(ranks) or 1
        )
        for pid in ranks or [proc.pid]:  # no rank yet: the launcher itself stops
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handle)
    except ValueError:  # not the main thread: no forwarding (the caller handles signals)
        logger.debug("signal forwarding not installed (not the main thread)")
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_tail(log_dir: Path) -> str:
    """The tail of the first rank log that shows an error (else of rank 0's)."""
    logs = sorted(log_dir.glob(RANK_LOG_GLOB), key=lambda p: p.name)
    if not logs:
        return f"(no {RANK_LOG_GLOB} in {log_dir})"
    for path in logs:
        text = path.read_text(encoding="utf-8", errors="replace")
        if "Traceback" in text or "Error" in text:
            break
    else:
        path = logs[0]
        text = path.read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.strip()][-LOG_TAIL_LINES:]
    return f"{path.name}:\n" + "\n".join(lines)


def run_launcher(
    command: Sequence[str], *, log_dir: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[int, bool]:
    """Run Paddle's launcher, forwarding SIGTERM to its ranks.

    Args:
        command: From :func:`launcher_command`.
        log_dir: Its ``--log_dir`` (for the failure message).
        env: Environment of the launcher and its ranks (default: this process's).

    Returns:
        ``(exit_code, terminated)``: the mapped exit code (:func:`exit_code_for`) and whether
        this process received SIGTERM/SIGINT while the ranks ran.
    """
    logger.info("launching: %s", " ".join(command))
    proc = subprocess.Popen(list(command), env=dict(env) if env is not None else None)
    with _forward_sigterm(proc) as state:
        returncode = proc.wait()
    code = exit_code_for(returncode, state["terminated"])
    if code not in (0, EXIT_PREEMPTED):
        logger.error(
            "data-parallel run failed (launcher exit %d); %s", returncode, _log_tail(Path(log_dir))
        )
    return code, state["terminated"]


def check_devices(nproc: int, device: str) -> None:
    """Fail before launching when this machine cannot host ``nproc`` ranks on ``device``.

    Raises:
        ValueError: On an unknown device or ``nproc < 1``.
        DeviceUnavailableError: ``device='gpu'`` on a CPU-only paddle or with fewer GPUs.
    """
    if device not in DEVICES:
        raise ValueError(f"device={device!r}: expected one of {list(DEVICES)}")
    if nproc < 1:
        raise ValueError(f"nproc={nproc}: expected at least 1 process")
    from ppminilm.compat.paddle import paddle

    if device == "cpu":
        if paddle.device.is_compiled_with_cuda():
            # Paddle's launcher puts a rank on every visible GPU of a CUDA build.
            raise ValueError(
                "device='cpu' ranks (gloo) need a CPU-only paddle; this build has CUDA: "
                "use device='gpu'"
            )
        return
    if not paddle.device.is_compiled_with_cuda():
        raise DeviceUnavailableError(
            f"distillation on {nproc} GPUs (gpus_per_node={nproc}) but paddle "
            f"{paddle.__version__} is a CPU-only build; use gpus_per_node=1 on CPU or the "
            "gpu-train image"
        )
    visible = paddle.device.cuda.device_count()
    if visible < nproc:
        raise DeviceUnavailableError(
            f"gpus_per_node={nproc} but this node sees {visible} GPU(s) "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
            "request as many GPUs as gpus_per_node for the step"
        )


def run_distill_processes(
    corpus_dir: str | os.PathLike[str],
    teacher_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    cfg: Any,
    *,
    nproc: int,
    device: str = "gpu",
    checkpoint_dir: str | None = None,
    vocab_dir: str | os.PathLike[str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run :func:`~ppminilm.stages.distill.train.run_distill` on ``nproc`` ranks of this node.

    Args:
        corpus_dir: Corpus shards (local directory or ``s3://`` prefix).
        teacher_dir: Teacher model directory or prefix.
        out_dir: Where rank 0 saves the student.
        cfg: The resolved :class:`~ppminilm.config.DistillConfig` (``batch_size`` per rank).
        nproc: Ranks (GPUs) on this node.
        device: ``gpu`` (NCCL, one GPU each) or ``cpu`` (gloo; needs a CPU-only paddle).
        checkpoint_dir: Checkpoints (rank 0 writes, every rank resumes from them).
        vocab_dir: Tokenizer directory (default: the teacher's).
        log_dir: Keep the rank logs here (default: a private temporary directory, removed).
        env: Extra environment for the ranks (e.g. ``OMP_NUM_THREADS``).

    Returns:
        Rank 0's result of ``run_distill`` (``world_size`` == ``nproc``,
        ``global_batch_size``, ...).

    Raises:
        DeviceUnavailableError: Too few GPUs (:func:`check_devices`).
        Preempted: The ranks were stopped by SIGTERM after checkpointing (exit code 143).
        ConfigError: A rank refused its input (exit 2: e.g. a checkpoint of another GPU count).
        LaunchError: Any other rank failure (the message quotes its log).
    """
    from ppminilm.errors import ConfigError
    from ppminilm.training.checkpoint import Preempted

    check_devices(nproc, device)
    work = Path(tempfile.mkdtemp(prefix="ppminilm-launch-"))  # mode 0700
    logs = Path(log_dir) if log_dir else work / "logs"
    try:
        config_file, summary_file = work / "distill_config.json", work / "summary.json"
        config_file.write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
        args = ["--corpus", str(corpus_dir), "--teacher", str(teacher_dir), "--out", str(out_dir)]
        args += ["--config", str(config_file), "--summary", str(summary_file)]
        if vocab_dir:
            args += ["--vocab", str(vocab_dir)]
        if checkpoint_dir:
            args += ["--checkpoint-dir", str(checkpoint_dir)]
        child_env = {**os.environ, **(env or {})}
        if device == "cpu":
            # Paddle's launcher reads any CUDA_VISIBLE_DEVICES as a GPU list; without it a
            # CPU-only build runs its ranks on gloo.
            child_env.pop("CUDA_VISIBLE_DEVICES", None)
        command = launcher_command(nproc, args, log_dir=logs)
        code, _terminated = run_launcher(command, log_dir=logs, env=child_env)
        if code == EXIT_PREEMPTED:
            from ppminilm.training.checkpoint import latest_step

            step = latest_step(checkpoint_dir) if checkpoint_dir else None
            raise Preempted(step or 0, checkpoint_dir)
        if code == ConfigError.exit_code:
            raise ConfigError(f"distillation refused its input: {_log_tail(logs)}")
        if code != 0:
            raise LaunchError(
                f"distillation on {nproc} {device} process(es) failed with exit code {code}; "
                f"{_log_tail(logs)}"
            )
        if not summary_file.is_file():
            raise LaunchError(f"rank 0 finished without writing its summary ({_log_tail(logs)})")
        from ppminilm.contracts import StageSummary
        from ppminilm.io import read_json_file

        summary = StageSummary.from_dict(read_json_file(summary_file), where=str(summary_file))
        return dict(summary.result)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """PaddleJob worker entry: ``python -m ppminilm.stages.distill.launch [opts] -- ARGS``.

    Returns:
        The exit code of :func:`run_launcher` (143 after SIGTERM: retryable).
    """
    parser = argparse.ArgumentParser(prog=f"python -m {LAUNCH_MODULE}", description=__doc__)
    parser.add_argument("--nproc-per-node", type=int, required=True, help="ranks (GPUs) here")
    parser.add_argument("--nnodes", type=int, default=None, help="nodes of a multi-node job")
    parser.add_argument("--log-dir", default=None, help="rank logs (default: temporary)")
    parser.add_argument("distill_args", nargs=argparse.REMAINDER, help="-- ppminilm distill args")
    args = parser.parse_args(argv)
    rest = list(args.distill_args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with tempfile.TemporaryDirectory(prefix="ppminilm-launch-") as tmp:
        log_dir = args.log_dir or str(Path(tmp) / "logs")
        command = launcher_command(args.nproc_per_node, rest, log_dir=log_dir, nnodes=args.nnodes)
        code, _ = run_launcher(command, log_dir=log_dir)
    return code


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses
    sys.exit(main())
