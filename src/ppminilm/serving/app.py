"""The HTTP server: the SDK's OIP v2 and v1 handlers on our own app, bound where we say.

``ModelServer`` gives the model registry and the data plane (routing by model name, decoding,
the ``preprocess -> predict`` calls); its ``start`` is not used, because it binds ``0.0.0.0`` and
``[::]:8081`` and shares one module-global app (:mod:`ppminilm.compat.kserve`). Instead
:class:`HTTPServer` serves, with uvicorn on ``ServeConfig.host``:

* :class:`~ppminilm.serving.asgi.RequestBody` (body limit 413, UTF-8, JSON typing), then
  :class:`~ppminilm.serving.asgi.FastInfer` (v2 infer on the SDK's data plane, without its
  pydantic round trips), then the FastAPI app of :func:`build_app` for everything else;
* in that app, the SDK's endpoint handlers (``V1Endpoints``, ``V2Endpoints``) on the routes
  :func:`build_app` lists, and no others: not the model repository extension (whose
  ``/v2/repository/models/<name>/unload`` would let any caller unload the model), not
  ``:explain`` (no explainer); server and model metadata that tell the truth (no extensions;
  the model's labels, ``max_seq_len``, engine and batching in ``parameters``); ``/metrics``
  (Prometheus, the SDK's request histograms);
* one JSON error shape for every refusal, ``{"error": "..."}`` (OIP's), with the status of
  :func:`ppminilm.serving.asgi.status_of`: FastAPI's 422 validation errors become 400, unknown
  routes and models 404; each is logged as one INFO line, and only an engine failure is a 500
  with a traceback;
* the SDK's gRPC servicer on the same host when ``grpc_port`` is set.

SIGTERM (or SIGINT) drains: the socket closes, in-flight requests finish (``grace_period_s``
at most), the batching queue empties, and :meth:`HTTPServer.run` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from fastapi import Request

from ppminilm.compat.kserve import BoundGRPCServer, kserve, model_server
from ppminilm.config import ServeConfig
from ppminilm.serving.asgi import FastInfer, RequestBody, message_of, status_of
from ppminilm.serving.model import TextClassifier

logger = logging.getLogger(__name__)

SERVER_NAME = "ppminilm"


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

    async def refusal(request: Any, exc: Exception) -> Any:
        status = status_of(exc)
        if status is None:
            logger.exception("500 %s %s", request.method, request.url.path, exc_info=exc)
            text = f"internal error ({type(exc).__name__})"
            return _error_response(HTTPStatus.INTERNAL_SERVER_ERROR, text, request)
        return _error_response(status, message_of(exc), request)

    async def validation(request: Any, exc: RequestValidationError) -> Any:
        return _error_response(HTTPStatus.BAD_REQUEST, _validation_message(exc), request)

    async def http_error(request: Any, exc: HTTPException) -> Any:
        return _error_response(exc.status_code, str(exc.detail), request)

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
    # Ours and the SDK's refusals by status_of; InferenceError (the engine) and the rest: 500.
    app.add_exception_handler(kerrors.InferenceError, refusal)
    app.add_exception_handler(Exception, refusal)


def build_app(server: Any, model: TextClassifier) -> Any:
    """The FastAPI app of one server: every route but v2 infer (see the module docstring).

    Args:
        server: The ``kserve.ModelServer`` holding the model (its data plane routes requests).
        model: The loaded model.
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

    async def v1_predict(model_name: str, request: Request) -> Any:
        # The SDK's handler, with the request announced to the batcher from the start.
        await server.dataplane.model_ready(model_name, True)
        with server.dataplane.get_model_from_registry(model_name).announce():
            return await v1.predict(model_name, request)

    v2 = V2Endpoints(server.dataplane, server.model_repository_extension)
    routes: list[tuple[str, Any, str]] = [
        ("/", live, "GET"),
        ("/metrics", metrics_handler, "GET"),
        ("/v1/models", v1.models, "GET"),
        ("/v1/models/{model_name}", v1.model_ready, "GET"),
        ("/v1/models/{model_name}:predict", v1_predict, "POST"),
        ("/v2", server_metadata, "GET"),
        ("/v2/health/live", v2.live, "GET"),
        ("/v2/health/ready", v2.ready, "GET"),
        ("/v2/models", v2.models, "GET"),
        ("/v2/models/{model_name}", model_metadata, "GET"),
        ("/v2/models/{model_name}/ready", v2.model_ready, "GET"),
        ("/v2/models/{model_name}/versions/{model_version}/infer", v2.infer, "POST"),
    ]
    for path, endpoint, method in routes:
        app.add_api_route(path, endpoint, methods=[method], response_model=None)
    _add_error_handlers(app)
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
        self.fastapi = build_app(self.model_server, model)
        self.app = RequestBody(
            FastInfer(self.fastapi, self.model_server.dataplane), cfg.max_payload_bytes
        )
        self.socket = sock or bind_socket(cfg.host, cfg.port)
        host, port = self.socket.getsockname()[:2]
        self.host, self.port = str(host), int(port)
        self.config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            # No X-Forwarded-* rewriting (nothing here reads the client address).
            proxy_headers=False,
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
