"""The kserve SDK (0.21), imported the safe way, and the parts of it we configure ourselves.

Import kserve through this module (``from ppminilm.compat.kserve import kserve``). What the SDK
does that a local server must not, and where it is handled:

=============================================================  ===============================
trap                                                           handled by
=============================================================  ===============================
``import kserve`` runs ``model_server.py``'s module-level       the import below, with
``parser.parse_known_args()`` on ``sys.argv``: a flag of ours   ``sys.argv`` cut to the program
or pytest's that prefixes one of its own (``--http``,           name, so its ``args`` are its
``--workers``) is taken for it, and a bad value exits the       defaults
process during the import
``ModelServer``'s constructor defaults come from those parsed   ``ppminilm.serving.app`` passes
``args``; ``enable_grpc`` defaults to True                      every value explicitly
``ModelServer.start`` serves HTTP on ``0.0.0.0`` (hard-coded     ``ppminilm.serving.app``: the
in ``RESTServer``), on the module-global FastAPI ``app`` (a      SDK's routes on a FastAPI app
second server in one process answers with the first's           of our own, served by uvicorn
models), and gRPC on ``[::]:8081``                              on ``host``; not ``start``
``GRPCServer.start`` binds ``[::]:<port>`` (hard-coded)          :class:`BoundGRPCServer`
the SDK's error handlers log a full traceback at ERROR for      ``ppminilm.serving.app``
every 400 and 404, and answer FastAPI's body validation         installs its own handlers
errors with 422 ``{"detail": [...]}``, not ``{"error": ...}``
``POST /v2/repository/models/<name>/unload`` unloads the model   ``ppminilm.serving.app`` leaves
for any caller                                                  the repository routes out
the SDK answers v1 with FastAPI's ``ORJSONResponse``, which    a warnings filter below
FastAPI 0.165 deprecates with a ``UserWarning`` per call site
kserve requires ``psutil<6``; nncf takes any psutil             requirements/constraints.txt
                                                                pins psutil 5.9.8
=============================================================  ===============================

``tests/unit/test_compat_kserve.py`` checks each of these against the installed SDK, so an
upgrade that changes one of them fails there first.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from ppminilm.errors import DeviceUnavailableError

#: The kserve release these workarounds were checked against.
CHECKED_VERSION = "0.21.0"

_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve
    from kserve import model_server
except ImportError as exc:  # pragma: no cover - the serve extra is not installed
    raise DeviceUnavailableError(
        f"the kserve SDK is not installed ({exc}); install the serve extra: "
        "pip install -c requirements/constraints.txt -e '.[serve]' (make install does)"
    ) from exc
finally:
    sys.argv = _argv

from fastapi.exceptions import FastAPIDeprecationWarning  # noqa: E402
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc  # noqa: E402
from kserve.protocol.grpc.interceptors import (  # noqa: E402
    ExceptionToStatusInterceptor,
    LoggingInterceptor,
)
from kserve.protocol.grpc.server import GRPCServer  # noqa: E402
from kserve.protocol.grpc.servicer import InferenceServicer  # noqa: E402

warnings.filterwarnings(
    "ignore", message="ORJSONResponse is deprecated", category=FastAPIDeprecationWarning
)

__all__ = ["CHECKED_VERSION", "BoundGRPCServer", "grpc_address", "kserve", "model_server"]


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC spells it (IPv6 literals in brackets)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class BoundGRPCServer(GRPCServer):  # type: ignore[misc]
    """kserve's gRPC server (OIP v2 servicer, its interceptors), bound to one address.

    ``GRPCServer.start`` listens on ``[::]:<port>``, every interface; this one listens on
    ``host`` only. The rest (servicer, message size options, ``stop(grace)``) is the SDK's.
    """

    def __init__(self, host: str, port: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(port, *args, **kwargs)
        self.host = host

    async def start(self, max_workers: int) -> None:
        """Start serving and wait until stopped (as ``GRPCServer.start``)."""
        from concurrent import futures

        from grpc import aio

        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._kwargs["grpc_max_send_message_length"]),
                (
                    "grpc.max_receive_message_length",
                    self._kwargs["grpc_max_receive_message_length"],
                ),
            ],
        )
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
            InferenceServicer(self._data_plane, self._model_repository_extension), self._server
        )
        self.port = self._server.add_insecure_port(grpc_address(self.host, self._port))
        await self._server.start()
        await self._server.wait_for_termination()
