"""Helpers of the serving tests: a server on 127.0.0.1 in a thread, and plain HTTP calls.

The client is the standard library's ``http.client``: nothing of the code under test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ppminilm.config import ServeConfig

#: Seconds a test waits for the server to come up or go down.
SERVER_TIMEOUT_S = 60.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | str | dict | None = None,
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Reply:
    """One request to 127.0.0.1:port (a JSON body for a dict)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=SERVER_TIMEOUT_S)
    if isinstance(body, dict):
        body = json.dumps(body, ensure_ascii=False).encode("utf-8")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        if own:
            conn.close()


def v2_body(texts: list[str], pairs: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    inputs = [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]
    if pairs is not None:
        inputs.append(
            {"name": "text_pair", "datatype": "BYTES", "shape": [len(pairs)], "data": pairs}
        )
    return {"inputs": inputs, **extra}


@contextlib.contextmanager
def running_server(model_dir: Path, **settings: Any) -> Iterator[Any]:
    """A loaded model behind :class:`~ppminilm.serving.HTTPServer` on a free 127.0.0.1 port,
    served from a thread; stopped (drained) on exit."""
    from ppminilm.serving import HTTPServer, load_model

    cfg = ServeConfig(**{"port": 0, "max_wait_ms": 2.0, "grace_period_s": 10, **settings})
    server = HTTPServer(load_model(str(model_dir), cfg), cfg)
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    if not server.started.wait(SERVER_TIMEOUT_S):
        raise RuntimeError("the test server did not start")
    try:
        yield server
    finally:
        server.stop()
        thread.join(SERVER_TIMEOUT_S)
