"""The HTTP server: the SDK's OIP v2 and v1 routes on our own app, bound where we say.

``ModelServer`` gives the model registry and the data plane (routing by model name, decoding,
the ``preprocess -> predict`` calls); its ``start`` is not used, because it binds ``0.0.0.0`` and
``[::]:8081`` and shares one module-global app (:mod:`ppminilm.compat.kserve`). Instead
:func:`build_app` puts the SDK's v1/v2 routes on a FastAPI app of our own, with:

* a body limit in front (413 before the body is read when ``Content-Length`` says so, else
  while it streams in);
* one JSON error shape for every refusal, ``{"error": "..."}`` (OIP's), with the status of
  :mod:`ppminilm.serving.errors`: FastAPI's 422 validation errors become 400, unknown routes
  404, unknown models 404; each is logged as one INFO line, and only an engine failure is a
  500 with a traceback;
* the SDK's endpoint handlers (``V1Endpoints``, ``V2Endpoints``) on the routes listed in
  :func:`build_app` -- except v2 ``infer``, whose hot path is :func:`v2_infer_endpoint` (the
  same data plane, without the SDK's pydantic round trips) -- and no others: not the model
  repository extension (whose ``/v2/repository/models/<name>/unload`` would let any caller
  unload the model), not ``:explain`` (no explainer);
* server and model metadata that tell the truth (no extensions; the model's labels,
  ``max_seq_len``, engine and batching in ``parameters``); ``/metrics`` (Prometheus, the SDK's
  request histograms).

:class:`HTTPServer` serves it with uvicorn on ``ServeConfig.host``, plus the SDK's gRPC
servicer on the same host when ``grpc_port`` is set. SIGTERM (or SIGINT) drains: the socket
closes, in-flight requests finish (``grace_period_s`` at most), the batching queue empties, and
:meth:`HTTPServer.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from http import HTTPStatus
from typing import Any

from ppminilm.compat.kserve import BoundGRPCServer, kserve, model_server
from ppminilm.config import ServeConfig
from ppminilm.serving.errors import RequestError
from ppminilm.serving.model import TextClassifier

logger = logging.getLogger(__name__)

SERVER_NAME = "ppminilm"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def _send_error(send: Send, status: int, message: str) -> None:
    import orjson

    body = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


#: Content types a JSON body often arrives with from tools (``curl -d`` sends the form type);
#: without the binary extension's header such a body is read as the JSON it is.
LENIENT_CONTENT_TYPES = (b"", b"application/x-www-form-urlencoded", b"text/plain")
BINARY_HEADER = b"inference-header-content-length"


def _json_content_type(scope: Scope) -> Scope:
    """``scope`` with ``content-type: application/json`` where the client sent none or a
    form/plain type and no binary-extension header (OIP REST bodies are JSON)."""
    headers = [(k.lower(), v) for k, v in scope["headers"]]
    names = {k for k, _ in headers}
    content_type = dict(headers).get(b"content-type", b"").split(b";")[0].strip().lower()
    if BINARY_HEADER in names or content_type not in LENIENT_CONTENT_TYPES:
        return scope
    headers = [(k, v) for k, v in headers if k != b"content-type"]
    return {**scope, "headers": [*headers, (b"content-type", b"application/json")]}


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, read them once.

    A ``Content-Length`` over the limit is answered before any of the body is read; a
    chunked body is counted as it arrives. A body within the limit must be UTF-8 (400
    otherwise; the binary extension's bodies excepted), and is handed to the app whole, typed
    as JSON unless it says otherwise (:func:`_json_content_type`).
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: int | str) -> str:
        return f"request body of {size} bytes; the limit is {self.max_bytes} (max_payload_bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_error(send, HTTPStatus.BAD_REQUEST, "bad Content-Length header")
                return
            if int(declared) > self.max_bytes:
                logger.info("413: %s", self._too_large(int(declared)))
                await _send_error(
                    send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._too_large(int(declared))
                )
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
                logger.info("413: %s", self._too_large(f"more than {self.max_bytes}"))
                await _send_error(
                    send,
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    self._too_large(f"more than {self.max_bytes}"),
                )
                return
        if BINARY_HEADER not in dict(scope["headers"]):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"request body is not UTF-8 ({exc.reason} at byte {exc.start})"
                logger.info("400: %s", problem)
                await _send_error(send, HTTPStatus.BAD_REQUEST, problem)
                return
        scope = _json_content_type(scope)
        whole: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return whole
            return await receive()

        await self.app(scope, replay, send)


def _error_response(status: int, message: str, request: Any = None) -> Any:
    import orjson
    from fastapi.responses import Response

    where = f"{request.method} {request.url.path}" if request is not None else ""
    log = logger.error if status >= 500 else logger.info
    log("%d %s: %s", status, where, message)
    return Response(
        orjson.dumps({"error": message}), status_code=int(status), media_type="application/json"
    )


def _validation_message(exc: Any) -> str:
    """FastAPI's body validation errors as one line (the first few problems)."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if loc[:1] == ["bytes"]:  # the SDK's body is InferenceRequest | bytes: not the point
            continue
        if loc[:1] == ["InferenceRequest"]:
            loc = loc[1:]
        problems.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request body: " + ("; ".join(problems[:3]) or "not an inference request")


def _add_error_handlers(app: Any) -> None:
    from fastapi.exceptions import RequestValidationError
    from kserve import errors as kerrors
    from starlette.exceptions import HTTPException

    statuses: dict[type[BaseException], int] = {
        kerrors.InvalidInput: HTTPStatus.BAD_REQUEST,
        kerrors.ModelNotFound: HTTPStatus.NOT_FOUND,
        kerrors.ModelNotReady: HTTPStatus.SERVICE_UNAVAILABLE,
        kerrors.ServerNotReady: HTTPStatus.SERVICE_UNAVAILABLE,
        kerrors.ServerNotLive: HTTPStatus.SERVICE_UNAVAILABLE,
        kerrors.UnsupportedProtocol: HTTPStatus.NOT_IMPLEMENTED,
        NotImplementedError: HTTPStatus.NOT_IMPLEMENTED,
    }

    async def request_error(request: Any, exc: RequestError) -> Any:
        return _error_response(exc.status, exc.message, request)

    async def known(request: Any, exc: Exception) -> Any:
        return _error_response(statuses[type(exc)], str(exc), request)

    async def validation(request: Any, exc: RequestValidationError) -> Any:
        return _error_response(HTTPStatus.BAD_REQUEST, _validation_message(exc), request)

    async def http_error(request: Any, exc: HTTPException) -> Any:
        return _error_response(exc.status_code, str(exc.detail), request)

    async def unexpected(request: Any, exc: Exception) -> Any:
        logger.exception("500 %s %s", request.method, request.url.path, exc_info=exc)
        return _error_response(
            HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error ({type(exc).__name__})", request
        )

    app.add_exception_handler(RequestError, request_error)
    for cls in statuses:
        app.add_exception_handler(cls, known)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(kerrors.InferenceError, unexpected)
    app.add_exception_handler(Exception, unexpected)


def v2_infer_endpoint(dataplane: Any) -> Callable[[Any], Awaitable[Any]]:
    """``POST /v2/models/<name>/infer``: the SDK's data plane, without its pydantic round trips.

    The SDK's route validates the body into a pydantic ``InferenceRequest``, converts it to an
    ``InferRequest``, and on the way out validates the ``InferResponse`` into a pydantic
    ``InferenceResponse`` that FastAPI walks value by value to serialise: most of the CPU a
    small request costs. This route decodes the JSON with orjson into the same
    ``InferRequest`` (:func:`ppminilm.serving.protocol.v2_request`; a binary-extension body
    through the SDK's ``InferRequest.from_bytes``), calls the same ``dataplane.infer`` and
    answers the SDK's own ``InferResponse.to_rest()`` encoding.
    """
    import orjson
    from fastapi.responses import Response
    from kserve.errors import InferenceError, InvalidInput

    from ppminilm.serving.errors import BadRequestError
    from ppminilm.serving.protocol import v2_request

    async def infer(request: Any) -> Any:
        name = request.path_params["model_name"]
        headers = {k.lower(): v for k, v in request.headers.items()}
        await dataplane.model_ready(name, True)  # ModelNotFound -> 404
        body = await request.body()
        binary = headers.get(BINARY_HEADER.decode())
        if binary is not None:
            try:
                infer_request = kserve.InferRequest.from_bytes(body, int(binary), name)
            except (InvalidInput, InferenceError, KeyError, TypeError, ValueError) as exc:
                raise BadRequestError(f"binary inference request: {exc!s}") from None
        else:
            try:
                decoded = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequestError(f"request body is not JSON: {exc}") from None
            infer_request = v2_request(decoded, name)
        response, response_headers = await dataplane.infer(
            model_name=name, request=infer_request, headers=headers
        )
        payload, json_length = response.to_rest()
        out_headers = dict(response_headers)
        if json_length is not None:
            out_headers[BINARY_HEADER.decode()] = str(json_length)
            return Response(payload, headers=out_headers, media_type="application/octet-stream")
        return Response(orjson.dumps(payload), headers=out_headers, media_type="application/json")

    return infer


def build_app(server: Any, model: TextClassifier, cfg: ServeConfig) -> Any:
    """The FastAPI app of one server (see the module docstring).

    Args:
        server: The ``kserve.ModelServer`` holding the model (its data plane routes requests).
        model: The loaded model.
        cfg: Server settings (``max_payload_bytes``).
    """
    from fastapi import FastAPI
    from kserve.errors import ModelNotFound
    from kserve.protocol.rest.server import metrics_handler
    from kserve.protocol.rest.v1_endpoints import V1Endpoints
    from kserve.protocol.rest.v2_endpoints import V2Endpoints

    app = FastAPI(
        title=SERVER_NAME,
        version=kserve.__version__ if hasattr(kserve, "__version__") else "",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    async def server_metadata() -> dict[str, Any]:
        from ppminilm import __version__

        return {"name": SERVER_NAME, "version": __version__, "extensions": []}

    async def model_metadata(model_name: str) -> dict[str, Any]:
        if model_name != model.name:
            raise ModelNotFound(model_name)
        return {
            "name": model.name,
            "platform": model.platform,
            "inputs": model.get_input_types(),
            "outputs": model.get_output_types(),
            "parameters": model.describe(),
        }

    async def live() -> dict[str, str]:
        return {"status": "alive"}

    v1 = V1Endpoints(server.dataplane, server.model_repository_extension)
    v2 = V2Endpoints(server.dataplane, server.model_repository_extension)
    routes: list[tuple[str, Any, str]] = [
        ("/", live, "GET"),
        ("/metrics", metrics_handler, "GET"),
        ("/v1/models", v1.models, "GET"),
        ("/v1/models/{model_name}", v1.model_ready, "GET"),
        ("/v1/models/{model_name}:predict", v1.predict, "POST"),
        ("/v2", server_metadata, "GET"),
        ("/v2/health/live", v2.live, "GET"),
        ("/v2/health/ready", v2.ready, "GET"),
        ("/v2/models", v2.models, "GET"),
        ("/v2/models/{model_name}", model_metadata, "GET"),
        ("/v2/models/{model_name}/ready", v2.model_ready, "GET"),
        ("/v2/models/{model_name}/versions/{model_version}/infer", v2.infer, "POST"),
    ]
    app.add_route("/v2/models/{model_name}/infer", v2_infer_endpoint(server.dataplane), ["POST"])
    for path, endpoint, method in routes:
        app.add_api_route(path, endpoint, methods=[method], response_model=None)
    _add_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=cfg.max_payload_bytes)
    return app


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it (Linux): a response goes out as written, not held back
    # by Nagle until the client's delayed ACK (40 ms per keep-alive request otherwise).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ppminilm.errors import UserError

        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server_class() -> type:
    import uvicorn

    class DrainingServer(uvicorn.Server):  # type: ignore[misc]
        """uvicorn's server, but a signal only drains it.

        uvicorn re-raises the signal after its graceful shutdown so that the previous handler
        (the default one: death) runs; a SIGTERM is how Kubernetes asks a server to stop, and
        a drained stop is a success, so :meth:`HTTPServer.run` returns instead.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def _on_signal(self, sig: int, frame: Any) -> None:
            logger.info(
                "%s: draining (in-flight requests finish, %d s at most)",
                signal.Signals(sig).name,
                self.config.timeout_graceful_shutdown,
            )
            self.handle_exit(sig, frame)

    return DrainingServer


class HTTPServer:
    """One model behind the SDK's ``ModelServer`` data plane, served by uvicorn.

    Args:
        model: A loaded :class:`~ppminilm.serving.model.TextClassifier`.
        cfg: Server settings (host, ports, limits, grace period).
        sock: A socket to serve on (default: bind ``cfg.host:cfg.port``).
    """

    def __init__(
        self, model: TextClassifier, cfg: ServeConfig, sock: socket.socket | None = None
    ) -> None:
        import uvicorn

        self.model = model
        self.cfg = cfg
        # Every value explicit: the constructor's defaults are the argv-parsed ones.
        defaults = model_server.parser.parse_args([])
        self.model_server = kserve.ModelServer(
            http_port=cfg.port,
            grpc_port=cfg.grpc_port,
            workers=1,
            max_threads=4,
            max_asyncio_workers=None,
            enable_grpc=False,
            enable_docs_url=False,
            enable_latency_logging=False,
            access_log_format=None,
            event_loop="auto",
            timeout_keep_alive=defaults.timeout_keep_alive,
            grace_period=cfg.grace_period_s,
            predictor_config=None,
            ssl_certfile=None,
            ssl_keyfile=None,
        )
        self.model_server.register_model(model)
        self.app = build_app(self.model_server, model, cfg)
        self.socket = sock or bind_socket(cfg.host, cfg.port)
        host, port = self.socket.getsockname()[:2]
        self.host, self.port = str(host), int(port)
        self.config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=cfg.grace_period_s,
            timeout_keep_alive=defaults.timeout_keep_alive,
            lifespan="off",
        )
        self.server = _uvicorn_server_class()(self.config)
        self._grpc: BoundGRPCServer | None = None
        self.grpc_port = 0
        self.started = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _serve(self) -> None:
        tasks = []
        if self.cfg.grpc_port:
            self._grpc = BoundGRPCServer(
                self.cfg.host,
                self.cfg.grpc_port,
                self.model_server.dataplane,
                self.model_server.model_repository_extension,
                kwargs=vars(model_server.parser.parse_args([])),
                grace_period=self.cfg.grace_period_s,
            )
            tasks.append(asyncio.ensure_future(self._grpc.start(max_workers=4)))
        watcher = asyncio.ensure_future(self._announce())
        try:
            await self.server.serve(sockets=[self.socket])
        finally:
            watcher.cancel()
            if self._grpc is not None:
                await self._grpc.stop()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _announce(self) -> None:
        while not self.server.started:
            await asyncio.sleep(0.01)
        if self._grpc is not None:
            while getattr(self._grpc, "port", None) is None:
                await asyncio.sleep(0.01)
            self.grpc_port = int(self._grpc.port)
        logger.info(
            "serving %s on %s (OIP v2 + v1%s); SIGTERM drains",
            self.model.name,
            self.url,
            f", gRPC on {self.cfg.host}:{self.grpc_port}" if self._grpc is not None else "",
        )
        self.started.set()

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`), then drain and stop the model."""
        started = time.perf_counter()
        try:
            asyncio.run(self._serve())
        finally:
            self.model.stop()
            stats = self.model.batcher.stats.to_dict() if self.model.batcher else {}
            logger.info(
                "stopped after %.0f s; engine ran %s batches, %s texts (mean batch %.1f)",
                time.perf_counter() - started,
                stats.get("batches", 0),
                stats.get("rows", 0),
                stats.get("mean_batch", 0.0),
            )

    def stop(self) -> None:
        """Ask the server to drain and stop (from any thread)."""
        self.server.should_exit = True


def load_model(model_dir: str, cfg: ServeConfig) -> TextClassifier:
    """Open ``model_dir`` for serving (engine, tokenizer, warm-up, batching queue).

    Raises:
        ModelFormatError: If it is not a deployable inference dir.
        EngineUnavailableError: If its engine is not installed here.
    """
    from ppminilm.serving.model import default_model_name

    model = TextClassifier(cfg.model_name or default_model_name(model_dir), model_dir, cfg)
    model.load()
    return model


def serve(model_dir: str, cfg: ServeConfig) -> None:
    """``ppminilm serve``: load the model, serve it until SIGTERM, drain, return."""
    HTTPServer(load_model(model_dir, cfg), cfg).run()
