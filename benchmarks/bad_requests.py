"""The bad requests the load test sends in the middle of the load, and what each must get.

Each case is a request a real client could send by mistake, with the status the server must
answer (always with a JSON ``{"error": ...}`` body) -- or, for the over-long text, the 200 with
the truncation header that says the text was cut.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.http_load import Reply

TRUNCATED_HEADER = "x-ppminilm-truncated"


@dataclass(frozen=True)
class BadCase:
    """One kind of bad request."""

    name: str
    path: str
    body: bytes
    status: int
    content_type: str = "application/json"
    #: Extra check of the reply beyond the status (None: the JSON error body).
    check: Callable[[Reply], str] | None = None

    def problem(self, reply: Reply) -> str:
        """Empty when the reply is what this case must get, else what is wrong."""
        if reply.status != self.status:
            return (
                f"{self.name}: status {reply.status}, expected {self.status}: {reply.body[:200]!r}"
            )
        if self.check is not None:
            return self.check(reply)
        try:
            error = json.loads(reply.body).get("error")
        except (ValueError, AttributeError):
            error = None
        if not isinstance(error, str) or not error:
            return f"{self.name}: body is not a JSON error object: {reply.body[:200]!r}"
        return ""


def _v2(texts: list[object], shape: list[int] | None = None, datatype: str = "BYTES") -> bytes:
    tensor = {
        "name": "text",
        "datatype": datatype,
        "shape": shape if shape is not None else [len(texts)],
        "data": texts,
    }
    return json.dumps({"inputs": [tensor]}, ensure_ascii=False).encode("utf-8")


def _truncated(reply: Reply) -> str:
    if TRUNCATED_HEADER not in reply.headers:
        return f"over-long text: 200 without the {TRUNCATED_HEADER} header"
    return ""


def bad_cases(
    model: str, *, max_payload_bytes: int, max_request_texts: int, max_text_chars: int
) -> list[BadCase]:
    """The matrix for a server with these limits (``ServeConfig`` defaults unless changed)."""
    infer = f"/v2/models/{model}/infer"
    predict = f"/v1/models/{model}:predict"
    long_text = "这家店的东西质量很好" * 40  # 400 characters: over any max_seq_len, within chars
    return [
        BadCase("shape disagrees with data", infer, _v2(["好用"], shape=[2]), 400),
        BadCase("shape not [n]", infer, _v2(["好用"], shape=[1, 2]), 400),
        BadCase("datatype not BYTES", infer, _v2([1.0], datatype="FP32"), 400),
        BadCase("empty text", infer, _v2([""]), 400),
        BadCase("text not a string", infer, _v2([17]), 400),
        BadCase("no inputs", infer, b'{"inputs": []}', 400),
        BadCase(
            "unknown input",
            infer,
            b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
            400,
        ),
        BadCase("not JSON", infer, b"{this is not json", 400),
        BadCase("not UTF-8", predict, '{"instances": ["好"]}'.encode("gbk"), 400),
        BadCase("v1 without instances", predict, b'{"texts": ["a"]}', 400),
        BadCase(
            "v1 mixed texts and pairs",
            predict,
            json.dumps({"instances": ["a", ["b", "c"]]}).encode(),
            400,
        ),
        BadCase("text over max_text_chars", infer, _v2(["好" * (max_text_chars + 1)]), 400),
        BadCase("too many texts", infer, _v2(["好"] * (max_request_texts + 1)), 413),
        BadCase(
            "body over max_payload_bytes",
            predict,
            b'{"instances": ["' + b"a" * max_payload_bytes + b'"]}',
            413,
        ),
        BadCase("unknown model", "/v2/models/no-such-model/infer", _v2(["好用"]), 404),
        BadCase("unknown route", "/v3/anything", b"{}", 404),
        BadCase("text over max_seq_len tokens", infer, _v2([long_text]), 200, check=_truncated),
    ]
