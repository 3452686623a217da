"""The error hierarchy: every expected failure is a user error or an infrastructure error.

A :class:`UserError` is the caller's mistake (bad config, bad data, a missing or foreign input
file, a wrong shape): fixing the input fixes it, retrying does not. An :class:`InfraError` is
the environment's (storage unreachable, bad credentials, no GPU, a failed cluster job): the
input is fine, the service needs checking, and some are worth a retry. Each class carries the
process exit code that the CLI and the KFP components exit with, so CI, retries and operators
can tell the cases apart without reading a trace:

====  =====================================================================================
code  meaning
====  =====================================================================================
1     internal error (a bug: reported with its traceback)
2     user error: config, arguments, data, model files (:class:`UserError`)
3     a public download failed (:class:`DownloadError`)
10-16 object storage (:mod:`ppminilm.storage.errors`)
20    the requested device is not available (:class:`DeviceUnavailableError`)
21    a cluster job failed or timed out (:class:`ClusterJobError`)
130   interrupted (Ctrl-C, SIGINT): stopped, outputs left as they were
143   terminated (SIGTERM): stopped, outputs left as they were; a training step first wrote a
      checkpoint, so a retry resumes
====  =====================================================================================

``UserError`` subclasses ``ValueError`` so code that guards with ``except ValueError`` keeps
working; messages name the file, line, field or service involved and never hold secrets.
"""

from __future__ import annotations

#: Exit code of an unexpected exception (a bug).
EXIT_INTERNAL = 1
#: Exit code of a user error (argparse uses 2 for bad arguments too).
EXIT_USAGE = 2
#: Exit code of a failed public download.
EXIT_DOWNLOAD = 3
#: Exit code of a missing device (GPU requested, none visible).
EXIT_DEVICE = 20
#: Exit code of a failed cluster job (PaddleJob).
EXIT_CLUSTER_JOB = 21
#: Exit code after a SIGTERM (the POSIX 128 + 15); training steps checkpoint first.
EXIT_PREEMPTED = 143
#: Exit code after Ctrl-C / SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class PPMiniLMError(Exception):
    """Base class of every expected failure; ``exit_code`` is what the process exits with."""

    exit_code = EXIT_INTERNAL


class UserError(PPMiniLMError, ValueError):
    """The input is wrong: config, arguments, data or model files. Not worth retrying."""

    exit_code = EXIT_USAGE


class ConfigError(UserError):
    """A stage config, profile, override or pipeline argument is invalid."""


class InfraError(PPMiniLMError):
    """The environment failed: storage, network, device or cluster. Some are retried."""

    exit_code = 10


class DownloadError(InfraError, RuntimeError):
    """Public data or weights could be neither found locally nor downloaded."""

    exit_code = EXIT_DOWNLOAD


class DeviceUnavailableError(InfraError, RuntimeError):
    """The configured device (a GPU, TensorRT) is not available on this machine."""

    exit_code = EXIT_DEVICE


class ClusterJobError(InfraError, RuntimeError):
    """A job launched on the cluster (a Training Operator PaddleJob) failed or timed out."""

    exit_code = EXIT_CLUSTER_JOB


class Terminated(SystemExit):
    """SIGTERM arrived: the step stops where it is and exits with :data:`EXIT_PREEMPTED`.

    Raised by the termination handler (:func:`ppminilm.runner.signals.handle_termination`)
    in the main thread, so every ``finally`` and staged writer unwinds: temp directories and
    in-flight multipart uploads are removed, outputs keep their previous content. A
    ``SystemExit``, so ``except Exception`` blocks (retry loops) do not swallow it.
    """

    def __init__(self, signum: int = 15) -> None:
        super().__init__(EXIT_PREEMPTED)
        self.signum = signum


def exit_code_of(exc: BaseException) -> int:
    """The exit code for an exception: its class's, 2 for plain input errors, else 1.

    ``ValueError``, ``FileNotFoundError``, ``NotADirectoryError``, ``IsADirectoryError``,
    ``UnicodeDecodeError`` and ``PermissionError`` from the standard library mean the input
    named a wrong path or held wrong content: user errors.
    """
    if isinstance(exc, PPMiniLMError):
        return int(exc.exit_code)
    if isinstance(exc, SystemExit):
        return int(exc.code) if isinstance(exc.code, int) else EXIT_INTERNAL
    if isinstance(exc, ValueError | OSError) and not isinstance(exc, ConnectionError):
        return EXIT_USAGE
    return EXIT_INTERNAL


def is_expected(exc: BaseException) -> bool:
    """Whether an exception is an expected failure (reported as one line, no traceback)."""
    return exit_code_of(exc) != EXIT_INTERNAL
