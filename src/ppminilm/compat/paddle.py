"""The one place where paddle is imported and its known traps on 2.6 are worked around.

Import paddle through this module (``from ppminilm.compat.paddle import paddle``) instead of
``import paddle`` anywhere in this package. It also holds the one ``ProgramDesc`` parser
(:func:`program_desc`), which reads a saved ``.pdmodel`` without touching static-mode state.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import signal
import sys
import threading
import warnings
import zlib  # noqa: F401  -- MUST be imported before paddle, see below.
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger(__name__)

# Trap 1: paddle 2.6's core library exports its own (older) zlib symbols. When `zlib` is first
# imported *after* paddle, the Python extension binds to paddle's copies and later zlib use
# (gzip, zipfile, PNG writing in matplotlib) crashes. Importing zlib first pins the system one.
# tests/unit/test_paddle_env.py checks the order in a fresh interpreter.

# Quieten paddle's GLOG chatter unless the user asked for it.
os.environ.setdefault("GLOG_minloglevel", "2")
# paddle imports distutils; setuptools' shim then warns once per process (every pipeline
# step). The warning is about setuptools' future, not about anything we can act on.
warnings.filterwarnings("ignore", message="Setuptools is replacing distutils")
os.environ.setdefault("FLAGS_call_stack_level", "1")

# Trap 4: importing paddle sets the root logger's level to WARNING, which silences the INFO
# progress of a CLI run that configured logging before the (lazy) paddle import.
_root_level = logging.getLogger().level

import paddle  # noqa: E402

logging.getLogger().setLevel(_root_level)
paddle.set_printoptions(precision=6)


def _restore_sigterm_handler() -> None:
    """Trap 2: importing paddle installs a C-level SIGTERM handler (a C++ stack dump, then
    death) behind Python's back. Put back whatever Python-level handler was set (the runner's
    clean stop, or the default), so SIGTERM behaves the same before and after the import.
    """
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, handler if handler is not None else signal.SIG_DFL)


_restore_sigterm_handler()


class _RestoreAfterPaddleNLP(importlib.abc.MetaPathFinder):
    """Trap 2b: ``paddlenlp/__init__.py`` calls ``paddle.disable_signal_handler()``, which
    resets SIGTERM to the default action at the C level, again behind Python's back (a SIGTERM
    then kills the process with no cleanup). This one-shot finder lets paddlenlp load as
    usual and puts the Python-level handler back right after it.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "paddlenlp":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_restore(module: ModuleType) -> None:
            try:
                exec_module(module)
            finally:
                _restore_sigterm_handler()

        loader.exec_module = exec_and_restore  # type: ignore[method-assign]
        return spec


if "paddlenlp" in sys.modules:
    _restore_sigterm_handler()
else:
    sys.meta_path.insert(0, _RestoreAfterPaddleNLP())


def import_paddle() -> ModuleType:
    """Return the paddle module, imported safely (zlib first).

    Returns:
        The ``paddle`` module.
    """
    return paddle


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and Paddle RNGs for reproducible runs.

    Args:
        seed: The seed value.
    """
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    paddle.seed(seed)


def program_desc(pdmodel: str | os.PathLike[str], error: type[Exception] = ValueError) -> Any:
    """Parse a saved ``.pdmodel`` program (protobuf ``ProgramDesc``) without static mode.

    Args:
        pdmodel: The program file.
        error: Exception class raised when the file is missing or not a Paddle program.

    Returns:
        The ``framework_pb2.ProgramDesc`` message (``.blocks[i].ops``, ``.vars``).
    """
    from paddle.base.proto import framework_pb2

    path = Path(pdmodel)
    if not path.is_file():
        raise error(f"{path}: no such file (expected a Paddle .pdmodel program)")
    desc = framework_pb2.ProgramDesc()
    try:
        desc.ParseFromString(path.read_bytes())
    except Exception as exc:  # protobuf raises its own DecodeError type
        raise error(f"{path}: not a Paddle program ({type(exc).__name__}: {exc})") from None
    return desc


def load_state_file(path: str | os.PathLike[str], error: type[Exception] = ValueError) -> Any:
    """``paddle.load`` a ``.pdparams``/``.pdopt`` file; damage raises ``error`` naming it.

    Trap 3: ``paddle.load`` reports a truncated or foreign file as ``EOFError``,
    ``UnpicklingError``, ``ValueError`` or ``RuntimeError`` without the file's name.

    Args:
        path: The state file.
        error: Exception class to raise (``ModelFormatError``, ``CheckpointError``...).
    """
    p = Path(path)
    if not p.is_file():
        raise error(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise error(f"{p}: empty file (0 bytes; an interrupted write or copy?)")
    try:
        return paddle.load(str(p))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise error(
            f"{p}: not a readable Paddle state file ({type(exc).__name__}: {first})"
        ) from None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    In a Kubernetes pod the affinity mask is the whole node while ``resources.limits.cpu``
    is a CFS quota (``cpu.max`` on cgroup v2, ``cpu.cfs_quota_us`` on v1); the quota is
    rounded up to whole CPUs.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, -(-quota[0] // quota[1])))
    return max(1, cpus)


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> tuple[int, int] | None:
    """``(quota, period)`` in microseconds of this cgroup, or None when unlimited/unknown."""
    try:
        fields = (root / "cpu.max").read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return int(fields[0]), int(fields[1])
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return (quota, period) if quota > 0 and period > 0 else None


def set_cpu_threads(threads: int = 0, share: int = 1) -> int:
    """Give paddle's CPU kernels ``threads`` math threads (0: this process's CPUs / ``share``).

    Trap 5: paddle 2.6 starts with one math thread (``FLAGS_paddle_num_threads`` defaults to
    1 and ``InitDevices`` applies it), so dygraph training on CPU used one core whatever the
    machine: the local teacher ran 2.17 MLM steps/s on 2 cores, 3.48 after
    ``set_num_threads(2)`` (OMP_NUM_THREADS=2 alone gives 2.93; the flag alone 2.30). Two
    processes sharing the cores must not each take all of them: two concurrent teachers ran
    1.64 steps/s each with 2 threads and 2.38 with 1. So ``share`` is how many such processes
    run side by side (a local grid's parallelism). Paddle Inference predictors set their own
    count (``InferConfig.num_threads``) and are not affected.

    Returns:
        The thread count set.
    """
    n = threads if threads > 0 else max(1, available_cpus() // max(1, share))
    from paddle.base import core

    core.set_num_threads(n)
    return n
