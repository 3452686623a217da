"""A stand-in for the KFP v2beta1 REST API (the real server cannot run here).

It implements just the calls ``kfp.Client.create_run_from_pipeline_package`` makes, records
every request (method, path, headers, JSON body) and checks each against what the real API
expects, answering 400 when a request is malformed so the client fails loudly.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeKfpServer:
    """Threaded HTTP server on 127.0.0.1 with request recording."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                url = urlparse(self.path)
                record = {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "headers": dict(self.headers),
                    "body": body,
                }
                server.requests.append(record)
                code, reply = server.route(record)
                self._reply(code, reply)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeKfpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _bad(self, message: str) -> tuple[int, dict[str, Any]]:
        self.errors.append(message)
        return 400, {"error": message, "code": 3, "message": message}

    def route(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one request the way the v2beta1 API does."""
        path, method, body = req["path"], req["method"], req["body"]
        if path == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False, "commit_sha": "fake", "tag_name": "2.4.0"}
        if path == "/apis/v2beta1/experiments" and method == "GET":
            exps = list(self.experiments.values())
            flt = req["query"].get("filter", [""])[0]
            if flt:
                exps = [e for e in exps if e["display_name"] in flt]
            return 200, {"experiments": exps, "total_size": len(exps)}
        if path == "/apis/v2beta1/experiments" and method == "POST":
            if not body or not body.get("display_name"):
                return self._bad("experiment needs a display_name")
            exp = {
                "experiment_id": str(uuid.uuid4()),
                "display_name": body["display_name"],
                "namespace": body.get("namespace", ""),
            }
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if path == "/apis/v2beta1/runs" and method == "POST":
            if not body:
                return self._bad("run body missing")
            if body.get("experiment_id") not in self.experiments:
                return self._bad(f"unknown experiment_id {body.get('experiment_id')!r}")
            spec = body.get("pipeline_spec")
            if isinstance(spec, dict) and "pipeline_spec" in spec:
                # Pipelines with Kubernetes settings are sent as {pipeline_spec, platform_spec}.
                if "platform_spec" not in spec:
                    return self._bad("pipeline_spec wrapper without platform_spec")
                spec = spec["pipeline_spec"]
            if not isinstance(spec, dict) or "root" not in spec or "components" not in spec:
                return self._bad("pipeline_spec must be a compiled IR (root + components)")
            run = {
                "run_id": str(uuid.uuid4()),
                "display_name": body.get("display_name"),
                "experiment_id": body["experiment_id"],
                "state": "PENDING",
            }
            self.runs[run["run_id"]] = {**run, "request": body}
            return 200, run
        return 404, {"error": f"no route for {method} {path}", "code": 5}
