"""The batching queue: batches bounded in size, a lone request not kept waiting, company
waited for only while it is on its way, the queue bounded, results to the right request, an
engine failure to every request of its batch, and close() draining what is queued."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

import numpy as np
import pytest

from ppminilm.serving.batcher import Batcher
from ppminilm.serving.errors import OverloadedError, ShuttingDownError

#: A wait long enough that a test would notice it (a lone request must not pay it).
LONG_WAIT_S = 0.5


class Engine:
    """Logits = the input ids' first column (so each row's answer is its own), slow on demand."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        self.gate.wait()
        if self.fail:
            raise RuntimeError("engine broke")
        time.sleep(self.delay_s)
        ids = arrays["input_ids"]
        self.batches.append(len(ids))
        return np.stack([ids[:, 0], -ids[:, 0]], axis=1).astype(np.float32)


def rows(*values: int) -> dict[str, np.ndarray]:
    ids = np.array([[v, 0, 0] for v in values], dtype=np.int64)
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids)}


def make(engine: Engine, **kw) -> Batcher:
    settings = {"max_batch_size": 4, "max_wait_s": LONG_WAIT_S, "max_queue_rows": 16, **kw}
    return Batcher(engine, **settings)


def test_a_lone_request_runs_at_once_and_gets_its_rows() -> None:
    batcher = make(Engine())

    async def run() -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        out = await batcher.submit(rows(7, 9))
        return out, time.perf_counter() - started

    out, seconds = asyncio.run(run())
    batcher.close()
    assert out[:, 0].tolist() == [7, 9]
    assert seconds < LONG_WAIT_S / 2  # nothing was on its way: no wait for company


def test_concurrent_requests_share_batches_of_bounded_size() -> None:
    engine = Engine()
    engine.gate.clear()  # hold the worker until everything is queued
    batcher = make(engine)

    async def run() -> list[np.ndarray]:
        tasks = [asyncio.ensure_future(batcher.submit(rows(i))) for i in range(10)]
        await asyncio.sleep(0.05)
        engine.gate.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    batcher.close()
    assert [int(r[0, 0]) for r in results] == list(range(10))  # each its own answer
    assert max(engine.batches) <= 4 and sum(engine.batches) == 10
    assert batcher.stats.rows == 10 and batcher.stats.batches == len(engine.batches)


def test_a_request_larger_than_a_batch_runs_alone_in_chunks() -> None:
    engine = Engine()
    batcher = make(engine)
    out = asyncio.run(batcher.submit(rows(*range(10))))
    batcher.close()
    assert out[:, 0].tolist() == list(range(10))
    assert engine.batches == [4, 4, 2]


def test_a_batch_waits_for_requests_on_their_way_but_not_longer_than_max_wait() -> None:
    engine = Engine()
    batcher = make(engine, max_wait_s=0.2)

    async def run() -> float:
        with batcher.preparing():  # a second request is being tokenized, never arrives
            started = time.perf_counter()
            await batcher.submit(rows(1))
            return time.perf_counter() - started

    seconds = asyncio.run(run())
    batcher.close()
    assert 0.15 <= seconds < 1.0
    assert engine.batches == [1]


def test_the_request_on_its_way_joins_the_batch() -> None:
    engine = Engine()
    batcher = make(engine, max_wait_s=2.0)

    async def second() -> np.ndarray:
        ticket = batcher.expect()  # decoding, tokenizing...
        await asyncio.sleep(0.05)
        return await batcher.submit(rows(2), ticket)

    async def run() -> list[np.ndarray]:
        task = asyncio.ensure_future(second())
        await asyncio.sleep(0)  # second() is now preparing
        return await asyncio.gather(batcher.submit(rows(1)), task)

    started = time.perf_counter()
    asyncio.run(run())
    batcher.close()
    assert engine.batches == [2]
    assert time.perf_counter() - started < 1.0  # not the whole max_wait


def test_the_queue_is_bounded() -> None:
    engine = Engine()
    engine.gate.clear()
    batcher = make(engine, max_queue_rows=3)

    async def run() -> None:
        running = asyncio.ensure_future(batcher.submit(rows(1)))  # taken, held by the gate
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(batcher.submit(rows(2, 3, 4)))  # fills the queue
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError, match="limit 3"):
            await batcher.submit(rows(5))
        engine.gate.set()
        await asyncio.gather(running, waiting)

    asyncio.run(run())
    batcher.close()


def test_an_engine_failure_reaches_every_request_of_the_batch() -> None:
    batcher = make(Engine(fail=True))

    async def run() -> list:
        return await asyncio.gather(
            batcher.submit(rows(1)), batcher.submit(rows(2)), return_exceptions=True
        )

    results = asyncio.run(run())
    assert all(isinstance(r, RuntimeError) for r in results)
    # ... and the worker keeps serving.
    batcher._run = Engine()
    assert asyncio.run(batcher.submit(rows(5)))[0, 0] == 5
    batcher.close()


def test_close_finishes_queued_work_then_refuses() -> None:
    engine = Engine(delay_s=0.1)
    batcher = make(engine, max_batch_size=1)
    results: list[np.ndarray] = []

    async def run() -> None:
        tasks = [asyncio.ensure_future(batcher.submit(rows(i))) for i in range(3)]
        await asyncio.sleep(0.02)
        closer = threading.Thread(target=batcher.close)
        closer.start()
        results.extend(await asyncio.gather(*tasks))
        closer.join()
        with pytest.raises(ShuttingDownError):
            await batcher.submit(rows(9))

    asyncio.run(run())
    assert [int(r[0, 0]) for r in results] == [0, 1, 2]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch_size=0"):
        Batcher(Engine(), max_batch_size=0, max_wait_s=0, max_queue_rows=1)
