"""The server's batching queue: the texts of concurrent requests run through the engine together.

KServe's own batcher is a sidecar of the InferenceService (``spec.predictor.batcher``), not part
of the Python SDK, so a local server gets none. This one is bounded three ways:

* a batch holds at most ``max_batch_size`` texts (a request with more runs alone, in chunks of
  that size); a request is never split across batches;
* the first request of a batch waits at most ``max_wait_s`` for others, and only while more
  are on their way (requests being decoded and tokenized, announced with
  :meth:`Batcher.expect`): a lone request runs at once, so batching costs it nothing;
* at most ``max_queue_rows`` texts wait; beyond that :meth:`Batcher.submit` refuses
  (:class:`~ppminilm.serving.errors.OverloadedError`, a 503) instead of queueing without end.

One worker thread runs the engine (Paddle, OpenVINO and onnxruntime release the GIL while
they compute, so the event loop keeps parsing and tokenizing the next requests meanwhile).
Results go back to each request's event loop with ``call_soon_threadsafe``. :meth:`close`
lets the queued work finish first: a SIGTERM drains, never drops.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ppminilm.serving.errors import OverloadedError, ShuttingDownError

logger = logging.getLogger(__name__)

#: ``run(batch) -> logits``: one engine call on ``[rows, seq]`` int64 inputs.
RunBatch = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass
class _Job:
    arrays: Mapping[str, np.ndarray]
    rows: int
    future: asyncio.Future[np.ndarray]
    loop: asyncio.AbstractEventLoop


@dataclass
class BatchStats:
    """What the worker ran: batches, texts, and how many batches had each size."""

    batches: int = 0
    rows: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    busy_s: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "batches": self.batches,
            "rows": self.rows,
            "mean_batch": self.rows / self.batches if self.batches else 0.0,
            "sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "busy_s": self.busy_s,
        }


class Ticket:
    """A request announced to a :class:`Batcher` (:meth:`Batcher.expect`)."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher
        self.open = True

    def release(self) -> None:
        """End it without queueing anything (idempotent)."""
        with self.batcher._cond:
            self.batcher._release(self)


def _resolve(future: asyncio.Future[np.ndarray], value: np.ndarray | BaseException) -> None:
    if future.done():  # the request went away (client closed the connection)
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


class Batcher:
    """Bounded batching of engine calls (see the module docstring).

    Args:
        run: One engine call (``Engine.run``).
        max_batch_size: Texts per engine call at most.
        max_wait_s: Longest wait of a batch's first request for company.
        max_queue_rows: Texts queued at most.
        name: Worker thread name.
    """

    def __init__(
        self,
        run: RunBatch,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_queue_rows: int,
        name: str = "ppminilm-batcher",
    ) -> None:
        if max_batch_size < 1 or max_queue_rows < 1 or max_wait_s < 0:
            raise ValueError(
                f"max_batch_size={max_batch_size} and max_queue_rows={max_queue_rows} must be "
                f">= 1, max_wait_s={max_wait_s} >= 0"
            )
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue_rows = max_queue_rows
        self.stats = BatchStats()
        self._cond = threading.Condition()
        self._jobs: collections.deque[_Job] = collections.deque()
        self._queued_rows = 0
        self._preparing = 0
        self._closing = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def queued_rows(self) -> int:
        """Texts waiting for the engine now."""
        return self._queued_rows

    def expect(self) -> Ticket:
        """Announce a request on its way (being decoded and tokenized).

        A batch waits up to ``max_wait_s`` while such requests are announced. The ticket ends
        when the request is queued (:meth:`submit` with it: in the same step, so the worker
        never sees the request as neither coming nor queued) or released (it failed first).
        """
        with self._cond:
            self._preparing += 1
        return Ticket(self)

    def _release(self, ticket: Ticket) -> None:
        """End a ticket (lock held by the caller or taken here)."""
        if not ticket.open:
            return
        ticket.open = False
        self._preparing -= 1
        self._cond.notify_all()

    @contextlib.contextmanager
    def preparing(self) -> Iterator[Ticket]:
        """:meth:`expect` for the duration of a block (released at its end if not used)."""
        ticket = self.expect()
        try:
            yield ticket
        finally:
            ticket.release()

    async def submit(
        self, arrays: Mapping[str, np.ndarray], ticket: Ticket | None = None
    ) -> np.ndarray:
        """Run one request's texts (``[rows, seq]`` inputs) in the next batch with room.

        Args:
            arrays: The request's model inputs.
            ticket: Its :meth:`expect` ticket, ended as the request is queued.

        Returns:
            Its logits, ``[rows, num_labels]``.

        Raises:
            OverloadedError: If the queue holds ``max_queue_rows`` texts already.
            ShuttingDownError: After :meth:`close`.
        """
        rows = len(next(iter(arrays.values())))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        with self._cond:
            if ticket is not None:
                self._release(ticket)
            if self._closing:
                raise ShuttingDownError("the server is shutting down; retry on another replica")
            if self._queued_rows + rows > self.max_queue_rows:
                raise OverloadedError(
                    f"{self._queued_rows} texts are queued (limit {self.max_queue_rows}); "
                    "retry later"
                )
            self._jobs.append(_Job(arrays, rows, future, loop))
            self._queued_rows += rows
            self._cond.notify_all()
        return await future

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new work, finish what is queued, stop the worker.

        Returns:
            Whether the worker finished within ``timeout``.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ worker thread

    def _take(self, batch: list[_Job], rows: int) -> int:
        """Move queued jobs into ``batch`` while they fit (lock held)."""
        while self._jobs:
            job = self._jobs[0]
            if batch and rows + job.rows > self.max_batch_size:
                break
            self._jobs.popleft()
            self._queued_rows -= job.rows
            if job.future.cancelled():
                continue
            batch.append(job)
            rows += job.rows
        return rows

    def _next_batch(self) -> list[_Job] | None:
        """Block until there is work; gather a batch (None when closed and drained)."""
        with self._cond:
            while not self._jobs:
                if self._closing:
                    return None
                self._cond.wait()
            batch: list[_Job] = []
            rows = self._take(batch, 0)
            deadline = time.monotonic() + self.max_wait_s
            while rows < self.max_batch_size and self._preparing and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                rows = self._take(batch, rows)
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        names = list(batch[0].arrays)
        started = time.perf_counter()
        try:
            inputs = {k: np.concatenate([job.arrays[k] for job in batch]) for k in names}
            total = len(inputs[names[0]])
            logits = np.concatenate(
                [
                    self._run({k: v[i : i + self.max_batch_size] for k, v in inputs.items()})
                    for i in range(0, total, self.max_batch_size)
                ]
            )
        except Exception as exc:
            logger.exception("engine call failed on a batch of %d requests", len(batch))
            for job in batch:
                job.loop.call_soon_threadsafe(_resolve, job.future, exc)
            return
        self.stats.busy_s += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.rows += total
        self.stats.sizes[total] = self.stats.sizes.get(total, 0) + 1
        start = 0
        for job in batch:
            part = logits[start : start + job.rows]
            start += job.rows
            job.loop.call_soon_threadsafe(_resolve, job.future, part)
