"""Graceful shutdown: a real SIGTERM to this process while a request is in flight.

The server runs in the main thread (where signals land), as ``ppminilm serve`` does; the engine
is slowed so the request is still running when the signal arrives. The request must finish
with its answer, new connections must be refused, ``run()`` must return (a drained stop, not a
death), the batching queue must be closed, and the previous SIGTERM handler must be back.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from ppminilm.config import ServeConfig
from tests.unit.serving_client import SERVER_TIMEOUT_S, call, v2_body

#: How long the in-flight request's engine call takes (the signal lands in the middle).
SLOW_ENGINE_S = 1.5


def test_sigterm_drains_in_flight_requests(tiny_deployable: Path) -> None:
    from ppminilm.serving import HTTPServer, load_model

    cfg = ServeConfig(port=0, grace_period_s=20)
    model = load_model(str(tiny_deployable), cfg)
    server = HTTPServer(model, cfg)
    assert model.batcher is not None
    engine_run = model.batcher._run
    running = threading.Event()

    def slow_run(arrays):
        running.set()
        time.sleep(SLOW_ENGINE_S)
        return engine_run(arrays)

    model.batcher._run = slow_run
    replies: dict[str, object] = {}

    def in_flight() -> None:
        server.started.wait(SERVER_TIMEOUT_S)
        replies["in_flight"] = call(server.port, "POST", server_path(model), v2_body(["好用"]))

    def terminate() -> None:
        running.wait(SERVER_TIMEOUT_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the listening socket is closed by now; the request is still running
        try:
            replies["late"] = call(server.port, "GET", "/v2/health/ready")
        except OSError as exc:
            replies["late"] = exc

    previous = signal.getsignal(signal.SIGTERM)
    threads = [threading.Thread(target=in_flight), threading.Thread(target=terminate)]
    for t in threads:
        t.start()
    started = time.perf_counter()
    server.run()  # returns once drained
    elapsed = time.perf_counter() - started
    for t in threads:
        t.join(SERVER_TIMEOUT_S)

    reply = replies["in_flight"]
    assert reply.status == 200, reply.body  # type: ignore[attr-defined]
    assert reply.json()["outputs"][0]["data"]  # type: ignore[attr-defined]
    assert isinstance(replies["late"], ConnectionRefusedError), replies["late"]
    assert elapsed < cfg.grace_period_s  # drained, not timed out
    assert model.ready is False
    assert not model.batcher._thread.is_alive()
    assert signal.getsignal(signal.SIGTERM) is previous


def server_path(model) -> str:
    return f"/v2/models/{model.name}/infer"
