"""A fake Kubernetes API server for PaddleJobs (HTTP on 127.0.0.1, port chosen by the OS).

It speaks the part of the API the ``kubeflow-training`` SDK uses for ``kubeflow.org/v1``
``paddlejobs`` (create, get, list, merge-patch, delete), answers like the real server (201,
200, 404 and 409 with a ``Status`` body, 422 for an invalid object) and *checks every object it
receives* against what the Training Operator and the garbage collector need
(:func:`paddlejob_problems`). A tiny "operator" moves each job through the conditions a test
scripts (``Created`` -> ``Running`` -> ``Succeeded`` after N reads, or ``Failed``).

Everything it received is kept in ``requests`` (method, path, body) and ``problems``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PATH = re.compile(
    r"^/apis/kubeflow\.org/v1/namespaces/(?P<ns>[^/]+)/paddlejobs(?:/(?P<name>[^/?]+))?/?(\?.*)?$"
)
#: Labels every job must carry, and the restart policy that survives pre-emption.
REQUIRED_LABELS = ("ppminilm.io/checkpoint",)
RESTART_POLICY = "ExitCode"


def paddlejob_problems(job: Any, namespace: str) -> list[str]:
    """What is wrong with a PaddleJob posted to ``namespace`` (empty: nothing)."""
    out: list[str] = []
    if not isinstance(job, dict):
        return ["body is not an object"]
    if job.get("apiVersion") != "kubeflow.org/v1" or job.get("kind") != "PaddleJob":
        out.append(f"apiVersion/kind {job.get('apiVersion')}/{job.get('kind')}")
    meta = job.get("metadata", {})
    if meta.get("namespace") not in (None, namespace):
        out.append(f"metadata.namespace {meta.get('namespace')} != URL namespace {namespace}")
    name = meta.get("name", "")
    if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", name) or len(name) > 48:
        out.append(f"metadata.name {name!r} is not a DNS label of <= 48 characters")
    for key in REQUIRED_LABELS:
        if key not in meta.get("labels", {}):
            out.append(f"metadata.labels lacks {key}")
    owners = meta.get("ownerReferences", [])
    if len(owners) != 1:
        out.append(f"expected one ownerReference, got {owners}")
    else:
        (owner,) = owners
        if owner.get("kind") != "Pod" or owner.get("apiVersion") != "v1":
            out.append(f"owner is {owner.get('apiVersion')}/{owner.get('kind')}, not v1/Pod")
        if not owner.get("uid") or not owner.get("name"):
            out.append("ownerReference without name/uid")
        if owner.get("blockOwnerDeletion"):
            out.append("blockOwnerDeletion needs pods/finalizers rights the step lacks")
    spec = job.get("spec", {})
    run = spec.get("runPolicy", {})
    for key in ("ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"):
        if not isinstance(run.get(key), int) or run.get(key) < 0:
            out.append(f"spec.runPolicy.{key} missing or not a non-negative integer")
    worker = spec.get("paddleReplicaSpecs", {}).get("Worker")
    if not worker:
        out.append("spec.paddleReplicaSpecs.Worker missing")
        return out
    if worker.get("restartPolicy") != RESTART_POLICY:
        out.append(f"Worker.restartPolicy {worker.get('restartPolicy')} != {RESTART_POLICY}")
    pod = worker.get("template", {}).get("spec", {})
    containers = pod.get("containers", [])
    if [c.get("name") for c in containers] != ["paddle"]:
        out.append("the operator needs exactly one container named 'paddle'")
    for c in containers:
        limits = c.get("resources", {}).get("limits", {})
        if "nvidia.com/gpu" not in limits:
            out.append("worker requests no nvidia.com/gpu")
    if not pod.get("terminationGracePeriodSeconds"):
        out.append("no terminationGracePeriodSeconds for the pre-emption checkpoint")
    return out


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 JSON merge patch (lists replace, null deletes)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class FakeKubeAPI:
    """State of the fake server: jobs by (namespace, name), scripts, requests, problems."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        #: Reads of a job before the "operator" marks it Succeeded (None: never).
        self.succeed_after_reads: int | None = 2
        #: Mark new jobs Failed on the first read instead.
        self.fail = False
        self._reads: dict[tuple[str, str], int] = {}

    def methods(self, name: str | None = None) -> list[str]:
        """HTTP methods received (for the job ``name`` only, if given)."""
        return [m for m, path, _ in self.requests if name is None or path.endswith(f"/{name}")]

    def put(self, job: dict[str, Any]) -> None:
        """Seed a job as if an earlier attempt had created it."""
        meta = job["metadata"]
        self.jobs[(meta["namespace"], meta["name"])] = copy.deepcopy(job)

    def set_conditions(self, namespace: str, name: str, *types: str) -> None:
        """Give a stored job these true conditions (the operator's verdict)."""
        job = self.jobs[(namespace, name)]
        job["status"] = {
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                for t in types
            ]
        }

    def _advance(self, key: tuple[str, str]) -> None:
        job = self.jobs[key]
        conditions = [c["type"] for c in job.get("status", {}).get("conditions", [])]
        if "Succeeded" in conditions or "Failed" in conditions:
            return
        self._reads[key] = self._reads.get(key, 0) + 1
        if self.fail:
            self.set_conditions(*key, "Created", "Failed")
        elif self.succeed_after_reads is not None and self._reads[key] > self.succeed_after_reads:
            self.set_conditions(*key, "Created", "Running", "Succeeded")
        else:
            self.set_conditions(*key, "Created", "Running")


def _handler(state: FakeKubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # keep test output clean
            return

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _status(self, code: int, reason: str, message: str) -> None:
            self._send(
                code,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": reason,
                    "message": message,
                    "code": code,
                },
            )

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw else None

        def _route(self, method: str) -> None:
            match = _PATH.match(self.path)
            body = self._body() if method in ("POST", "PATCH", "DELETE") else None
            with state.lock:
                state.requests.append((method, self.path.split("?")[0], body))
                if not match:
                    self._status(404, "NotFound", f"no route {self.path}")
                    return
                ns, name = match.group("ns"), match.group("name")
                getattr(self, f"_{method.lower()}")(ns, name, body)

        def _get(self, ns: str, name: str | None, _body: Any) -> None:
            if name is None:
                items = [j for (n, _), j in sorted(state.jobs.items()) if n == ns]
                self._send(200, {"apiVersion": "kubeflow.org/v1", "kind": "PaddleJobList",
                                 "items": items})  # fmt: skip
                return
            if (ns, name) not in state.jobs:
                self._status(404, "NotFound", f'paddlejobs.kubeflow.org "{name}" not found')
                return
            state._advance((ns, name))
            self._send(200, state.jobs[(ns, name)])

        def _post(self, ns: str, _name: str | None, body: Any) -> None:
            problems = paddlejob_problems(body, ns)
            if problems:
                state.problems.extend(problems)
                self._status(422, "Invalid", "; ".join(problems))
                return
            name = body["metadata"]["name"]
            if (ns, name) in state.jobs:
                self._status(
                    409, "AlreadyExists", f'paddlejobs.kubeflow.org "{name}" already exists'
                )
                return
            job = copy.deepcopy(body)
            job["metadata"].update({"namespace": ns, "uid": f"job-{len(state.jobs)}"})
            state.jobs[(ns, name)] = job
            self._send(201, job)

        def _patch(self, ns: str, name: str | None, body: Any) -> None:
            if name is None or (ns, name) not in state.jobs:
                self._status(404, "NotFound", f"paddlejob {name} not found")
                return
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                state.problems.append(f"PATCH with {self.headers.get('Content-Type')}")
            job = _merge(copy.deepcopy(state.jobs[(ns, name)]), body or {})
            owners = job["metadata"].get("ownerReferences", [])
            if len(owners) != 1 or owners[0].get("kind") != "Pod" or not owners[0].get("uid"):
                state.problems.append(f"PATCH left ownerReferences {owners}")
            state.jobs[(ns, name)] = job
            self._send(200, job)

        def _delete(self, ns: str, name: str | None, _body: Any) -> None:
            if name is None or state.jobs.pop((ns, name), None) is None:
                self._status(404, "NotFound", f"paddlejob {name} not found")
                return
            self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_DELETE(self) -> None:
            self._route("DELETE")

    return Handler


@contextmanager
def fake_kube_api() -> Iterator[tuple[FakeKubeAPI, str]]:
    """Run the server on 127.0.0.1; yields ``(state, "http://127.0.0.1:PORT")``."""
    state = FakeKubeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def write_kubeconfig(path: Path, host: str, namespace: str) -> Path:
    """A kubeconfig pointing at the fake server (what a subprocess's client loads)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": host}}],
                "users": [{"name": "fake", "user": {"token": "fake-token"}}],
                "contexts": [
                    {
                        "name": "fake",
                        "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                    }
                ],
                "current-context": "fake",
            }
        ),
        encoding="utf-8",
    )
    return path
