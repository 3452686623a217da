"""A stand-in for the KFP v2beta1 REST API (the real server cannot run here), strict on purpose.

It serves the calls ``pipelines/submit.py`` makes through ``kfp.Client`` -- healthz, pipelines
and pipeline versions (list with an exact-name filter, multipart upload), experiments (list with
an exact-name filter, create), runs (create, get) -- records every request, and answers 400 to
anything the real server would refuse: a JSON body with a field that the ``kfp_server_api``
model of that request does not have or of the wrong type, an unknown pipeline, version or
experiment, a package that is not a compiled pipeline, a run parameter the version's pipeline
does not declare, a second version with the same name, and in multi-user mode a missing or
foreign namespace. A run's state advances through :attr:`FakeKfpServer.run_states`, one step per
``GET``.
"""

from __future__ import annotations

import datetime
import email.parser
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import kfp_server_api
import yaml

API = "/apis/v2beta1"
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(str, (.+)\)$")
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "bool": (bool,),
    "int": (int, str),  # int64 travels as a JSON string
    "float": (int, float),
    "object": (object,),
    "datetime": (str,),
}


def model_problems(value: Any, type_name: str, where: str) -> list[str]:
    """Where a JSON value does not fit a ``kfp_server_api`` OpenAPI type (strict: unknown
    fields are problems). ``type_name`` is an ``openapi_types`` string."""
    if value is None:
        return []
    if match := _LIST.match(type_name):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            p for i, v in enumerate(value) for p in model_problems(v, match[1], f"{where}[{i}]")
        ]
    if match := _DICT.match(type_name):
        if not isinstance(value, dict):
            return [f"{where}: expected an object"]
        return [p for k, v in value.items() for p in model_problems(v, match[1], f"{where}.{k}")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name])
        if type_name in ("int", "float", "str") and isinstance(value, bool):
            ok = False
        return [] if ok else [f"{where}: expected {type_name}, got {type(value).__name__}"]
    model = getattr(kfp_server_api.models, type_name, None)
    if model is None:
        return [f"{where}: unknown model {type_name}"]
    if not isinstance(value, dict):
        if getattr(model, "allowable_values", None) is not None or not model.openapi_types:
            return []  # an enum (a plain string)
        return [f"{where}: expected a {type_name} object"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        if key not in by_json:
            problems.append(f"{where}.{key}: not a field of {type_name}")
        else:
            problems.extend(
                model_problems(item, model.openapi_types[by_json[key]], f"{where}.{key}")
            )
    return problems


def _exact_filter(query: dict[str, list[str]]) -> str | None:
    """The display name an ``EQUALS display_name`` filter asks for (None: no filter)."""
    raw = query.get("filter", [""])[0]
    if not raw:
        return None
    predicates = json.loads(raw).get("predicates", [])
    (pred,) = predicates
    assert pred["key"] == "display_name" and pred["operation"] in ("EQUALS", 1), pred
    return pred.get("stringValue", pred.get("string_value"))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKfpServer:
    """Threaded HTTP server on 127.0.0.1 with request recording.

    Args:
        version: ``tag_name`` reported by healthz.
        multi_user: Whether to behave as multi-user Kubeflow (namespaces required).
        namespace: The one profile namespace that exists in multi-user mode.
    """

    def __init__(
        self, version: str = "2.17.0", multi_user: bool = False, namespace: str = "ppminilm"
    ) -> None:
        self.version, self.multi_user, self.namespace = version, multi_user, namespace
        self.requests: list[dict[str, Any]] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.run_states = ["PENDING", "RUNNING", "SUCCEEDED"]
        self.errors: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urlparse(self.path)
                ctype = self.headers.get("Content-Type", "")
                record = {
                    "method": method,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "headers": dict(self.headers),
                    "body": json.loads(raw) if raw and "json" in ctype else None,
                    "files": _multipart(ctype, raw) if "multipart" in ctype else {},
                }
                with server._lock:
                    server.requests.append(record)
                    code, reply = server.route(record)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeKfpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _bad(self, message: str, code: int = 400) -> tuple[int, dict[str, Any]]:
        self.errors.append(message)
        return code, {"error": message, "code": 3, "message": message}

    def _namespace_problem(self, ns: str | None, what: str) -> str | None:
        if not self.multi_user:
            return None
        if not ns:
            return f"{what}: in multi-user mode a namespace is required"
        if ns != self.namespace:
            return f"{what}: namespace {ns!r} is not a profile namespace ({self.namespace!r})"
        return None

    def route(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one request the way the v2beta1 API does."""
        path, method, query, body = req["path"], req["method"], req["query"], req["body"]
        ns = query.get("namespace", [None])[0]
        if path == f"{API}/healthz" and method == "GET":
            return 200, {
                "commit_sha": "fake",
                "tag_name": self.version,
                "multi_user": self.multi_user,
            }
        if path == f"{API}/pipelines" and method == "GET":
            name = _exact_filter(query)
            found = [
                p for p in self.pipelines.values() if name is None or p["display_name"] == name
            ]
            return 200, {"pipelines": found, "total_size": len(found)}
        if path == f"{API}/pipelines/upload" and method == "POST":
            return self._upload(query, req["files"], pipeline_id=None, ns=ns)
        if path == f"{API}/pipelines/upload_version" and method == "POST":
            return self._upload(query, req["files"], query.get("pipelineid", [""])[0], ns=None)
        if (m := re.fullmatch(f"{API}/pipelines/([^/]+)/versions", path)) and method == "GET":
            if m[1] not in self.pipelines:
                return self._bad(f"unknown pipeline {m[1]!r}", 404)
            name = _exact_filter(query)
            found = [
                {k: v for k, v in ver.items() if k != "spec"}
                for ver in self.versions.values()
                if ver["pipeline_id"] == m[1] and (name is None or ver["display_name"] == name)
            ]
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if path == f"{API}/experiments" and method == "GET":
            if problem := self._namespace_problem(ns, "list experiments"):
                return self._bad(problem)
            name = _exact_filter(query)
            found = [
                e for e in self.experiments.values() if name is None or e["display_name"] == name
            ]
            return 200, {"experiments": found, "total_size": len(found)}
        if path == f"{API}/experiments" and method == "POST":
            problems = model_problems(body, "V2beta1Experiment", "experiment")
            if problems or not (body or {}).get("display_name"):
                return self._bad("; ".join(problems) or "experiment needs a display_name")
            exp_ns = body.get("namespace") or ""
            if problem := self._namespace_problem(exp_ns, "create experiment"):
                return self._bad(problem)
            exp = {
                "experiment_id": str(uuid.uuid4()),
                "display_name": body["display_name"],
                "namespace": exp_ns if self.multi_user else "",  # single-user: blanked
                "created_at": _now(),
            }
            self.experiments[exp["experiment_id"]] = exp
            return 200, exp
        if path == f"{API}/runs" and method == "POST":
            return self._create_run(body)
        if (m := re.fullmatch(f"{API}/runs/([^/]+)", path)) and method == "GET":
            run = self.runs.get(m[1])
            if run is None:
                return self._bad(f"unknown run {m[1]!r}", 404)
            states = self.run_states
            run["polls"] += 1
            run["state"] = states[min(run["polls"], len(states) - 1)]
            return 200, {k: v for k, v in run.items() if k not in ("request", "polls")}
        return self._bad(f"no route for {method} {path}", 404)

    def _upload(
        self, query: dict, files: dict[str, bytes], pipeline_id: str | None, ns: str | None
    ) -> tuple[int, dict[str, Any]]:
        name = (query.get("name") or query.get("display_name") or [""])[0]
        if not name or "uploadfile" not in files:
            return self._bad("upload needs a name and an uploadfile")
        try:
            docs = [d for d in yaml.safe_load_all(files["uploadfile"]) if d]
            spec = docs[0]
            assert "root" in spec and "components" in spec and "pipelineInfo" in spec
        except Exception:
            return self._bad("uploadfile is not a compiled pipeline (pipelineInfo/root/components)")
        if pipeline_id is None:
            if any(p["display_name"] == name for p in self.pipelines.values()):
                return self._bad(f"pipeline {name!r} already exists", 409)
            if ns is not None and (problem := self._namespace_problem(ns, "upload pipeline")):
                return self._bad(problem)
            pipeline = {
                "pipeline_id": str(uuid.uuid4()),
                "display_name": name,
                "namespace": ns or "",
                "created_at": _now(),
            }
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            pipeline_id, reply = pipeline["pipeline_id"], pipeline
        elif pipeline_id not in self.pipelines:
            return self._bad(f"unknown pipeline id {pipeline_id!r}", 404)
        else:
            reply = None
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name
               for v in self.versions.values()):  # fmt: skip
            return self._bad(f"version {name!r} already exists", 409)
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "display_name": name,
            "created_at": _now(),
            "spec": spec,
        }
        self.versions[version["pipeline_version_id"]] = version
        return 200, reply or {k: v for k, v in version.items() if k != "spec"}

    def _create_run(self, body: Any) -> tuple[int, dict[str, Any]]:
        problems = model_problems(body, "V2beta1Run", "run")
        if problems or not body:
            return self._bad("; ".join(problems) or "run body missing")
        exp = self.experiments.get(body.get("experiment_id"))
        if exp is None:
            return self._bad(f"unknown experiment_id {body.get('experiment_id')!r}")
        if problem := self._namespace_problem(exp["namespace"], "create run"):
            return self._bad(problem)
        ref = body.get("pipeline_version_reference") or {}
        version = self.versions.get(ref.get("pipeline_version_id"))
        if version is None or version["pipeline_id"] != ref.get("pipeline_id"):
            return self._bad(f"pipeline_version_reference {ref!r} names no uploaded version")
        if body.get("pipeline_spec"):
            return self._bad("run gives both a pipeline_spec and a pipeline version")
        declared = version["spec"]["root"]["inputDefinitions"]["parameters"]
        params = (body.get("runtime_config") or {}).get("parameters") or {}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            return self._bad(f"runtime parameters {unknown} are not inputs of the pipeline")
        run = {
            "run_id": str(uuid.uuid4()),
            "display_name": body.get("display_name"),
            "experiment_id": body["experiment_id"],
            "pipeline_version_reference": ref,
            "state": self.run_states[0],
            "created_at": _now(),
        }
        self.runs[run["run_id"]] = {**run, "request": body, "polls": 0}
        return 200, run


def _multipart(ctype: str, raw: bytes) -> dict[str, bytes]:
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    files = {}
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        files[name] = part.get_payload(decode=True)
    return files
