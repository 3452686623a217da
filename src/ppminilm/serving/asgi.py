"""The server's ASGI layers in front of FastAPI: the request body, and the v2 infer hot path.

uvicorn calls :class:`RequestBody`, which calls :class:`FastInfer`, which calls the FastAPI app
(:func:`ppminilm.serving.app.build_app`) for everything but ``POST /v2/models/<name>/infer``.

* :class:`RequestBody` reads a request body once, bounded: a ``Content-Length`` over
  ``max_payload_bytes`` gets 413 before any of it is read, a chunked one while it streams in;
  a body must be UTF-8 (400 otherwise; the binary extension's bodies excepted); a JSON body
  sent as a form or as plain text (``curl -d``) is typed as the JSON it is.
* :class:`FastInfer` answers v2 infer with the SDK's data plane but without its web layers.
  The SDK's route has FastAPI validate the body into a pydantic ``InferenceRequest``, convert
  it to an ``InferRequest``, then validate the ``InferResponse`` into a pydantic
  ``InferenceResponse`` and walk it value by value to serialise it, behind Starlette's and
  FastAPI's middleware stack (error, telemetry, body limit, routing): on a small model that is
  as much CPU as the model itself. Here the body is decoded with orjson into the same
  ``InferRequest`` (:func:`ppminilm.serving.protocol.v2_request`; binary-extension bodies by
  the SDK's ``InferRequest.from_bytes``), handed to the same ``dataplane.infer``, and answered
  with the SDK's own ``InferResponse.to_rest()``: the same wire format
  (tests/unit/test_serving_server.py compares it with the SDK's route).

Every refusal is ``{"error": "..."}`` with the status of :func:`status_of`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import orjson

from ppminilm.compat.kserve import kserve
from ppminilm.serving.errors import BadRequestError, RequestError

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Header of the OIP binary extension (a JSON head of this length, then raw tensor bytes).
BINARY_HEADER = b"inference-header-content-length"
#: Content types a JSON body often arrives with from tools (``curl -d`` sends the form type);
#: without the binary extension's header such a body is read as the JSON it is.
LENIENT_CONTENT_TYPES = (b"", b"application/x-www-form-urlencoded", b"text/plain")
_V2_INFER = re.compile(r"/v2/models/([^/]+)/infer")


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an expected refusal (ours or the SDK's); None for anything else."""
    from kserve import errors as kerrors

    if isinstance(exc, RequestError):
        return int(exc.status)
    statuses: dict[type[BaseException], int] = {
        kerrors.InvalidInput: HTTPStatus.BAD_REQUEST,
        kerrors.ModelNotFound: HTTPStatus.NOT_FOUND,
        kerrors.ModelNotReady: HTTPStatus.SERVICE_UNAVAILABLE,
        kerrors.ServerNotReady: HTTPStatus.SERVICE_UNAVAILABLE,
        kerrors.ServerNotLive: HTTPStatus.SERVICE_UNAVAILABLE,
        kerrors.UnsupportedProtocol: HTTPStatus.NOT_IMPLEMENTED,
        NotImplementedError: HTTPStatus.NOT_IMPLEMENTED,
    }
    return statuses.get(type(exc))


def message_of(exc: BaseException) -> str:
    return exc.message if isinstance(exc, RequestError) else str(exc)


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """One complete JSON (or binary-extension) response."""
    await send(
        {
            "type": "http.response.start",
            "status": int(status),
            "headers": [
                *(headers or [(b"content-type", b"application/json")]),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, where: str = "") -> None:
    """``{"error": message}`` with ``status``, logged as one line (a traceback only for 5xx
    is the caller's business)."""
    log = logger.error if status >= 500 else logger.info
    log("%d %s: %s", status, where, message)
    await send_json(send, status, orjson.dumps({"error": message}))


def json_content_type(scope: Scope) -> Scope:
    """``scope`` with ``content-type: application/json`` where the client sent none or a
    form/plain type and no binary-extension header (OIP REST bodies are JSON)."""
    headers = [(k.lower(), v) for k, v in scope["headers"]]
    names = {k for k, _ in headers}
    content_type = dict(headers).get(b"content-type", b"").split(b";")[0].strip().lower()
    if BINARY_HEADER in names or content_type not in LENIENT_CONTENT_TYPES:
        return scope
    headers = [(k, v) for k, v in headers if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


class RequestBody:
    """Read each request body once, bounded and checked (see the module docstring)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | str) -> str:
        return f"request body of {size} bytes; the limit is {self.max_bytes} (max_payload_bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        where = f"{scope['method']} {scope['path']}"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_error(send, HTTPStatus.BAD_REQUEST, "bad Content-Length header", where)
                return
            if int(declared) > self.max_bytes:
                too_large = self._too_large(int(declared))
                await send_error(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large, where)
                return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                too_large = self._too_large(f"more than {self.max_bytes}")
                await send_error(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large, where)
                return
        if BINARY_HEADER not in headers:
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"request body is not UTF-8 ({exc.reason} at byte {exc.start})"
                await send_error(send, HTTPStatus.BAD_REQUEST, problem, where)
                return
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return whole
            return await receive()

        await self.app(json_content_type(scope), replay, send)


def decode_v2(body: bytes, headers: dict[str, str], name: str) -> Any:
    """The ``InferRequest`` of a v2 body (JSON, or the binary extension)."""
    from kserve.errors import InferenceError, InvalidInput

    from ppminilm.serving.protocol import v2_request

    binary = headers.get(BINARY_HEADER.decode())
    if binary is not None:
        try:
            return kserve.InferRequest.from_bytes(body, int(binary), name)
        except (InvalidInput, InferenceError, KeyError, TypeError, ValueError) as exc:
            raise BadRequestError(f"binary inference request: {exc!s}") from None
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"request body is not JSON: {exc}") from None
    return v2_request(decoded, name)


class FastInfer:
    """``POST /v2/models/<name>/infer`` on the SDK's data plane (see the module docstring);
    every other request goes to ``app``."""

    def __init__(self, app: ASGIApp, dataplane: Any) -> None:
        self.app = app
        self.dataplane = dataplane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _V2_INFER.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            await send_error(
                send, HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed", scope["path"]
            )
            return
        name = match[1]
        try:
            await self.dataplane.model_ready(name, True)  # ModelNotFound -> 404
            with self.dataplane.get_model_from_registry(name).announce():
                message = await receive()
                headers = _decoded_headers(scope)
                infer_request = decode_v2(message.get("body", b""), headers, name)
                response, response_headers = await self.dataplane.infer(
                    model_name=name, request=infer_request, headers=headers
                )
            payload, json_length = response.to_rest()
        except Exception as exc:
            status = status_of(exc)
            if status is None:
                logger.exception("500 POST %s", scope["path"])
                status, text = HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({exc!r:.80})"
            else:
                text = message_of(exc)
            await send_error(send, status, text, f"POST {scope['path']}")
            return
        out = [(k.encode("latin-1"), str(v).encode("latin-1")) for k, v in response_headers.items()]
        if json_length is None:
            out.append((b"content-type", b"application/json"))
            await send_json(send, HTTPStatus.OK, orjson.dumps(payload), out)
            return
        out.append((b"content-type", b"application/octet-stream"))
        out.append((BINARY_HEADER, str(json_length).encode()))
        await send_json(send, HTTPStatus.OK, payload, out)


def _decoded_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
