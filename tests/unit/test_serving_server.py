"""The model server for real: started on 127.0.0.1 in this process, called over HTTP.

Protocol conformance of every route (OIP v2 and KServe v1 shapes), the same labels as
``ppminilm infer predict``'s code path, truncation said in a header, the bad-request matrix
(each a 4xx with a JSON error body, the server still serving after all of them), the body
limit before and while the body is read, and what the SDK would have exposed that we do not.
"""

from __future__ import annotations

import http.client
import math
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from ppminilm.data import load_task_dir
from ppminilm.inference.benchmark import predict
from ppminilm.serving.protocol import TRUNCATED_HEADER
from tests.unit.conftest import SERVE_SEQ
from tests.unit.serving_client import call, running_server, v2_body

#: Small limits so the matrix can cross them cheaply.
LIMITS = {"max_payload_bytes": 16384, "max_request_texts": 8, "max_text_chars": 300}
MODEL = "local_reviews"
INFER = f"/v2/models/{MODEL}/infer"
PREDICT = f"/v1/models/{MODEL}:predict"
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tiny_deployable: Path):
    with running_server(tiny_deployable, **LIMITS) as srv:
        yield srv


@pytest.fixture(scope="module")
def dev_texts(local_data_dir: Path) -> list[str]:
    return [e["sentence"] for e in load_task_dir(local_data_dir / "tasks" / MODEL).dev[:8]]


def _ok(reply) -> dict:
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    return reply.json()


# --------------------------------------------------------------------------- conformance


def test_binds_loopback_only_with_nodelay(server) -> None:
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert server.model_server.enable_grpc is False and server.grpc_port == 0


def test_health_and_server_metadata(server) -> None:
    port = server.port
    assert _ok(call(port, "GET", "/v2/health/live")) == {"live": True}
    assert _ok(call(port, "GET", "/v2/health/ready")) == {"ready": True}
    assert _ok(call(port, "GET", "/")) == {"status": "alive"}
    meta = _ok(call(port, "GET", "/v2"))
    assert meta["name"] == "ppminilm" and meta["version"] and meta["extensions"] == []
    assert _ok(call(port, "GET", "/v2/models")) == {"models": [MODEL]}
    assert _ok(call(port, "GET", f"/v2/models/{MODEL}/ready")) == {"name": MODEL, "ready": True}
    assert _ok(call(port, "GET", "/v1/models")) == {"models": [MODEL]}
    assert _ok(call(port, "GET", f"/v1/models/{MODEL}")) == {"name": MODEL, "ready": True}
    assert call(port, "GET", "/metrics").status == 200


def test_model_metadata(server) -> None:
    meta = _ok(call(server.port, "GET", f"/v2/models/{MODEL}"))
    assert meta["name"] == MODEL and meta["platform"] == "paddle_inference"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("text", "BYTES", [-1]),
        ("text_pair", "BYTES", [-1]),
    ]
    k = len(meta["parameters"]["labels"])
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP32", [-1, k]),
        ("logits", "FP32", [-1, k]),
    ]
    params = meta["parameters"]
    assert params["max_seq_len"] == SERVE_SEQ and params["engine"] == "paddle"
    assert params["truncation_header"] == TRUNCATED_HEADER


def test_v2_infer_response_conforms_and_labels_match_predict(server, tiny_deployable, dev_texts):
    body = _ok(call(server.port, "POST", INFER, v2_body(dev_texts, id="req-7"), JSON))
    assert set(body) >= {"model_name", "id", "outputs"}
    assert body["model_name"] == MODEL and body["id"] == "req-7"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert list(outputs) == ["label", "probabilities"]
    for out in outputs.values():
        assert len(out["data"]) == math.prod(out["shape"]), out["name"]
    n, labels = len(dev_texts), _ok(call(server.port, "GET", f"/v2/models/{MODEL}"))
    labels = labels["parameters"]["labels"]
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [n]
    assert outputs["probabilities"]["shape"] == [n, len(labels)]
    probs = np.array(outputs["probabilities"]["data"]).reshape(n, -1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The judge: the same labels as `ppminilm infer predict` gives (its code path, same dir).
    assert outputs["label"]["data"] == predict(tiny_deployable, dev_texts)
    assert [labels[i] for i in probs.argmax(axis=1)] == outputs["label"]["data"]


def test_v2_requested_outputs_pairs_and_nx1_shape(server, dev_texts) -> None:
    port = server.port
    only = _ok(call(port, "POST", INFER, v2_body(dev_texts[:3], outputs=[{"name": "logits"}])))
    assert [o["name"] for o in only["outputs"]] == ["logits"]
    assert only["outputs"][0]["datatype"] == "FP32" and only["outputs"][0]["shape"][0] == 3
    pairs = _ok(call(port, "POST", INFER, v2_body(dev_texts[:2], dev_texts[2:4])))
    assert pairs["outputs"][0]["shape"] == [2]
    column = v2_body(dev_texts[:2])
    column["inputs"][0].update(shape=[2, 1], data=[[dev_texts[0]], [dev_texts[1]]])
    assert _ok(call(port, "POST", INFER, column))["outputs"][0]["shape"] == [2]


def test_v1_predict(server, tiny_deployable, dev_texts) -> None:
    body = _ok(call(server.port, "POST", PREDICT, {"instances": dev_texts[:4]}))
    preds = body["predictions"]
    assert [p["label"] for p in preds] == predict(tiny_deployable, dev_texts[:4])
    assert all(set(p) == {"label", "probabilities"} for p in preds)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in preds)
    mixed_forms = {
        "instances": [[dev_texts[0], dev_texts[1]], {"text": dev_texts[2], "text_pair": "好"}],
        "return_logits": True,
    }
    preds = _ok(call(server.port, "POST", PREDICT, mixed_forms))["predictions"]
    assert len(preds) == 2 and all(len(p["logits"]) == len(p["probabilities"]) for p in preds)


def test_over_long_text_is_truncated_and_the_header_says_which(server, tiny_deployable) -> None:
    long_text = "这本书的内容非常好，印刷也很清楚" * 4  # > SERVE_SEQ tokens, < max_text_chars
    texts = ["好用", long_text, "太差了"]
    reply = call(server.port, "POST", INFER, v2_body(texts))
    assert _ok(reply)["outputs"][0]["data"] == predict(tiny_deployable, texts)
    assert reply.headers[TRUNCATED_HEADER] == "1"
    assert TRUNCATED_HEADER not in call(server.port, "POST", INFER, v2_body(["好用"])).headers
    v1 = call(server.port, "POST", PREDICT, {"instances": [long_text]})
    assert v1.status == 200 and v1.headers[TRUNCATED_HEADER] == "0"


def test_curl_style_form_content_type_is_read_as_json(server) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert call(server.port, "POST", INFER, v2_body(["好用"]), form).status == 200


# --------------------------------------------------------------------------- bad requests

BAD = [
    # (case, method, path, body, status)
    ("shape disagrees with data", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [2], "data": ["好"]}]}, 400),
    ("shape not [n] or [n, 1]", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1, 2], "data": ["a", "b"]}]}, 400),
    ("negative shape", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [-1], "data": []}]}, 400),
    ("datatype not BYTES", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400),
    ("text not a string", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": [3]}]}, 400),
    ("empty text", "POST", INFER, v2_body([""]), 400),
    ("blank text", "POST", INFER, v2_body(["  \t "]), 400),
    ("empty pair text", "POST", INFER, v2_body(["好"], [""]), 400),
    ("pair count differs", "POST", INFER, v2_body(["好", "坏"], ["一"]), 400),
    ("no texts", "POST", INFER, v2_body([]), 400),
    ("no inputs", "POST", INFER, {"inputs": []}, 400),
    ("inputs not a list", "POST", INFER, {"inputs": 3}, 400),
    ("input without data", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1]}]}, 400),
    ("unknown input", "POST", INFER, {"inputs": [
        {"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}, 400),
    ("input given twice", "POST", INFER, {"inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["a"]},
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["b"]}]}, 400),
    ("unknown output", "POST", INFER, v2_body(["好"], outputs=[{"name": "embedding"}]), 400),
    ("not JSON", "POST", INFER, b"{not json", 400),
    ("JSON but not an object", "POST", INFER, b"[1, 2]", 400),
    ("not UTF-8 (v2)", "POST", INFER,
     '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["好"]}]}'
     .encode("gbk"), 400),
    ("not UTF-8 (v1)", "POST", PREDICT, '{"instances": ["好"]}'.encode("gbk"), 400),
    ("bad binary extension", "POST", INFER, b"\x00\x01", 400),
    ("v1 without instances", "POST", PREDICT, {"texts": ["a"]}, 400),
    ("v1 instances not a list", "POST", PREDICT, {"instances": "a"}, 400),
    ("v1 bad instance", "POST", PREDICT, {"instances": [3]}, 400),
    ("v1 mixed texts and pairs", "POST", PREDICT, {"instances": ["a", ["b", "c"]]}, 400),
    ("v1 return_logits not bool", "POST", PREDICT, {"instances": ["a"], "return_logits": 1}, 400),
    ("text over max_text_chars", "POST", INFER, v2_body(["好" * 301]), 400),
    ("too many texts (v2)", "POST", INFER, v2_body(["好"] * 9), 413),
    ("too many texts (v1)", "POST", PREDICT, {"instances": ["好"] * 9}, 413),
    ("body over max_payload_bytes", "POST", PREDICT, {"instances": ["a" * 20000]}, 413),
    ("unknown model (v2)", "POST", "/v2/models/nope/infer", v2_body(["好"]), 404),
    ("unknown model (v1)", "POST", "/v1/models/nope:predict", {"instances": ["好"]}, 404),
    ("unknown model metadata", "GET", "/v2/models/nope", None, 404),
    ("unknown route", "GET", "/v3/anything", None, 404),
    ("repository unload is not served", "POST", f"/v2/repository/models/{MODEL}/unload", b"", 404),
    ("explain is not served", "POST", f"/v1/models/{MODEL}:explain", {"instances": ["a"]}, 405),
    ("versions are not supported", "POST", f"/v2/models/{MODEL}/versions/2/infer", v2_body(["a"]),
     501),
    ("wrong method", "GET", INFER, None, 405),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_request_gets_its_status_and_a_json_error(server, case) -> None:
    _, method, path, body, status = case
    headers = {"Inference-Header-Content-Length": "9"} if case[0].startswith("bad binary") else {}
    reply = call(server.port, method, path, body, {**JSON, **headers})
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    error = reply.json()["error"]
    assert isinstance(error, str) and error


def test_the_server_keeps_serving_after_the_matrix(server) -> None:
    for case in BAD:
        call(server.port, case[1], case[2], case[3], JSON)
    assert _ok(call(server.port, "GET", f"/v2/models/{MODEL}/ready"))["ready"] is True
    assert _ok(call(server.port, "POST", INFER, v2_body(["好用"])))["outputs"][0]["data"]


def test_error_messages_name_the_problem(server) -> None:
    def error(body, path=INFER) -> str:
        return call(server.port, "POST", path, body, JSON).json()["error"]

    assert "shape [2] but 1 values" in error(BAD[0][3])
    assert "text[0] is empty" in error(v2_body([""]))
    assert "9 texts" in error(v2_body(["好"] * 9)) and "at most 8" in error(v2_body(["好"] * 9))
    assert "not UTF-8" in error(BAD[18][3])
    assert "nope" in error(v2_body(["好"]), "/v2/models/nope/infer")


def test_body_limit_applies_before_and_while_reading(server) -> None:
    # Declared too large: answered without reading the body.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", PREDICT)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 413 and b"max_payload_bytes" in reply.read()
    conn.close()
    # Chunked, no length: counted as it arrives.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunks = iter([b'{"instances": ["' + b"a" * 9000, b"a" * 9000 + b'"]}'])
    conn.request(
        "POST",
        PREDICT,
        body=chunks,
        headers={**JSON, "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    reply = conn.getresponse()
    assert reply.status == 413
    conn.close()


def test_concurrent_clients_are_batched_and_all_answered(server, dev_texts) -> None:
    before = server.model.batcher.stats.rows
    statuses: list[int] = []

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for j in range(5):
            text = dev_texts[(i * 5 + j) % len(dev_texts)]
            statuses.append(call(server.port, "POST", INFER, v2_body([text]), conn=conn).status)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses == [200] * 40
    assert server.model.batcher.stats.rows - before == 40


def test_the_fast_v2_route_answers_what_the_sdks_route_answers(server, dev_texts) -> None:
    """Our v2 infer (no pydantic round trips) against the SDK's own route on the same data
    plane and model: the same JSON for a plain request, requested outputs and pairs."""
    from fastapi import FastAPI
    from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
    from starlette.testclient import TestClient

    sdk = FastAPI()
    register_v2_endpoints(sdk, server.model_server.dataplane, None)
    client = TestClient(sdk)
    for body in (
        v2_body(dev_texts[:3], id="a"),
        v2_body(dev_texts[:2], id="b", outputs=[{"name": "logits"}, {"name": "label"}]),
        v2_body(dev_texts[:2], dev_texts[2:4], id="c", parameters={"note": "x"}),
    ):
        theirs = client.post(INFER, json=body)
        ours = call(server.port, "POST", INFER, body, JSON)
        assert theirs.status_code == ours.status == 200
        assert _without_nulls(ours.json()) == _without_nulls(theirs.json())


def _without_nulls(value):
    """The SDK's pydantic round trip writes optional fields as null; we leave them out (OIP:
    "parameters" is optional). Otherwise the bodies must be equal."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
