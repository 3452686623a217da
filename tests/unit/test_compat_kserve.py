"""Each kserve trap :mod:`ppminilm.compat.kserve` works around, checked on the installed SDK.

If an upgrade fixes or changes one of them, its test here says so first; the workaround's
own effect is checked beside it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import subprocess
import sys
import warnings

import pytest

from ppminilm.compat.kserve import CHECKED_VERSION, BoundGRPCServer, grpc_address, kserve
from ppminilm.compat.kserve import model_server as sdk_server


def test_checked_version_is_installed() -> None:
    assert importlib.metadata.version("kserve") == CHECKED_VERSION


def test_import_parses_argv_but_ours_saw_only_the_program_name() -> None:
    # The trap: model_server.py parses sys.argv at import time...
    assert "parse_known_args()" in inspect.getsource(sdk_server)
    # ...so under pytest it would have seen pytest's flags; through compat it saw none.
    assert vars(sdk_server.args) == vars(sdk_server.parser.parse_args([]))


def test_sdk_binds_every_interface_and_opens_grpc_by_default() -> None:
    from kserve.protocol.grpc.server import GRPCServer
    from kserve.protocol.rest.server import RESTServer

    assert 'host="0.0.0.0"' in inspect.getsource(RESTServer.__init__)
    assert '"[::]:' in inspect.getsource(GRPCServer.start)
    assert inspect.signature(kserve.ModelServer.__init__).parameters["enable_grpc"].default
    assert "kserve.model_server:app" in inspect.getsource(RESTServer.create_application)


def test_sdk_exposes_unload_and_logs_tracebacks_for_bad_input() -> None:
    from kserve import errors
    from kserve.protocol.rest.v2_endpoints import register_v2_endpoints

    assert "/repository/models/{model_name}/unload" in inspect.getsource(register_v2_endpoints)
    assert "exc_info=exc" in inspect.getsource(errors.invalid_input_handler)


def test_sdk_requires_old_psutil_and_the_pin_satisfies_it() -> None:
    requires = importlib.metadata.requires("kserve") or []
    assert any(r.replace(" ", "").startswith("psutil<6") for r in requires), requires
    assert int(importlib.metadata.version("psutil").split(".")[0]) < 6


def test_orjson_response_deprecation_is_silenced() -> None:
    import importlib

    from fastapi.responses import ORJSONResponse

    import ppminilm.compat.kserve as compat

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ORJSONResponse({"a": 1})  # the SDK's v1 answers use it
        assert [w for w in caught if "ORJSONResponse" in str(w.message)]  # the trap
        caught.clear()
        importlib.reload(compat)  # what importing it does
        ORJSONResponse({"a": 1})
    assert not [w for w in caught if "ORJSONResponse" in str(w.message)]


@pytest.mark.parametrize(
    ("host", "port", "address"),
    [("127.0.0.1", 9, "127.0.0.1:9"), ("::1", 9, "[::1]:9"), ("[::1]", 9, "[::1]:9")],
)
def test_grpc_address(host: str, port: int, address: str) -> None:
    assert grpc_address(host, port) == address


def test_bound_grpc_server_listens_on_loopback_only() -> None:
    import grpc
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.grpc import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension

    registry = kserve.ModelRepository()
    server = BoundGRPCServer(
        "127.0.0.1",
        0,
        DataPlane(model_registry=registry),
        ModelRepositoryExtension(model_registry=registry),
        kwargs=vars(sdk_server.parser.parse_args([])),
        grace_period=1,
    )

    async def run() -> bool:
        task = asyncio.ensure_future(server.start(max_workers=1))
        while getattr(server, "port", None) is None:
            await asyncio.sleep(0.01)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
            live = await stub.ServerLive(grpc_predict_v2_pb2.ServerLiveRequest(), timeout=10)
        await server.stop()
        await task
        return bool(live.live)

    assert asyncio.run(run()) is True
    assert server.port > 0


@pytest.mark.integration
def test_a_bad_sdk_flag_in_argv_kills_a_plain_import_not_ours() -> None:
    code = "import sys; sys.argv = ['serve', '--http_port=not-a-port']; import {}"
    plain = subprocess.run([sys.executable, "-c", code.format("kserve")], capture_output=True)
    assert plain.returncode == 2 and b"--http_port" in plain.stderr
    ours = subprocess.run(
        [sys.executable, "-c", code.format("ppminilm.compat.kserve")], capture_output=True
    )
    assert ours.returncode == 0, ours.stderr
