"""SIGTERM for both doors: stop cleanly, leave outputs as they were, exit 143.

Kubernetes stops a pod with SIGTERM (then SIGKILL after the grace period); KFP and Argo do the
same when a run is cancelled. Python's default is to die on the spot, which skips every
``finally``: a staged output directory stays behind half-built, a multipart upload stays open.
:func:`handle_termination` turns the first SIGTERM into :class:`~ppminilm.errors.Terminated`
raised in the main thread, so the writers unwind; later SIGTERMs are logged and ignored until
the cleanup is done. Training loops install their own handler on top
(:class:`~ppminilm.training.checkpoint.PreemptionGuard`) to checkpoint first.

Paddle installs a C-level SIGTERM handler when imported (it prints a C++ stack dump);
:mod:`ppminilm.compat.paddle` puts the Python-level handler back right after the import.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import types
from collections.abc import Iterator
from typing import Any

from ppminilm.errors import Terminated

logger = logging.getLogger("ppminilm.runner")


class _TerminationHandler:
    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, _frame: types.FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.fired:
            logger.warning("received %s again: still cleaning up", name)
            return
        self.fired = True
        logger.error("received %s: stopping; outputs are left as they were", name)
        raise Terminated(signum)


@contextlib.contextmanager
def handle_termination() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`~ppminilm.errors.Terminated` (exit 143).

    Outside the main thread (where handlers cannot be installed) it does nothing. The
    previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: Any = signal.signal(signal.SIGTERM, _TerminationHandler())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
