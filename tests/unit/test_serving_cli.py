"""``ppminilm serve`` as a user runs it: its own process on 127.0.0.1, the same labels as
``ppminilm infer predict`` prints, SIGTERM answered by a drained exit 0."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.unit.serving_client import SERVER_TIMEOUT_S, call, v2_body

pytestmark = pytest.mark.integration

TEXTS = ["这个东西很好用，推荐购买", "质量太差了，再也不买了", "一般般吧"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if call(port, "GET", "/v2/health/ready").status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("ppminilm serve did not become ready")


def test_serve_answers_like_infer_predict_and_drains_on_sigterm(tiny_deployable: Path) -> None:
    predicted = subprocess.run(
        [sys.executable, "-m", "ppminilm", "infer", "predict", "--model-dir", str(tiny_deployable),
         *TEXTS],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    want = [line.split("\t", 1)[0] for line in predicted.stdout.splitlines()]
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppminilm", "serve", "--model-dir", str(tiny_deployable),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_ready(port, proc)
        reply = call(port, "POST", "/v2/models/local_reviews/infer", v2_body(TEXTS))
        assert reply.status == 200, reply.body
        assert reply.json()["outputs"][0]["data"] == want
        v1 = call(port, "POST", "/v1/models/local_reviews:predict", {"instances": TEXTS})
        assert [p["label"] for p in json.loads(v1.body)["predictions"]] == want
        # It listens on 127.0.0.1:port and nothing else (no gRPC on the SDK's [::]:8081).
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.Process(proc.pid).connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", port)}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=SERVER_TIMEOUT_S)
    assert proc.returncode == 0, stderr.decode()
    assert b"draining" in stderr and b"stopped after" in stderr
