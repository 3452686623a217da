"""Shared fixtures: a local S3 endpoint (moto) for tests that touch object storage.

``s3_server`` / ``s3_env``: moto in this process, any credentials accepted.
``s3_auth_server`` / ``s3_auth_env``: moto in a child process with authentication enforced;
only the key pair it reports is accepted.
The servers start lazily, once per session, only when a test asks for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from s3server import RunningS3Server, start_auth_s3_server, start_s3_server

#: Tiny retry policy so failure-path tests stay fast.
TEST_MAX_ATTEMPTS = "2"
TEST_BACKOFF_S = "0.01"


def _set_env(monkeypatch: pytest.MonkeyPatch, server: RunningS3Server) -> RunningS3Server:
    monkeypatch.setenv("PPMINILM_S3_ENDPOINT", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("PPMINILM_S3_MAX_ATTEMPTS", TEST_MAX_ATTEMPTS)
    monkeypatch.setenv("PPMINILM_S3_BACKOFF_S", TEST_BACKOFF_S)
    for name in ("PPMINILM_S3_SECURE", "AWS_SESSION_TOKEN", "PPMINILM_S3_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    return server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[RunningS3Server]:
    """moto S3 on 127.0.0.1 (free port), auth not enforced: ``endpoint``, ``access_key``,
    ``secret_key``."""
    server = start_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server: RunningS3Server, monkeypatch: pytest.MonkeyPatch) -> RunningS3Server:
    """Point the storage env vars at ``s3_server`` (tiny retry policy) for one test."""
    return _set_env(monkeypatch, s3_server)


@pytest.fixture(scope="session")
def s3_auth_server() -> Iterator[RunningS3Server]:
    """moto S3 with authentication enforced (child process); its keys are an IAM user's."""
    server = start_auth_s3_server()
    yield server
    server.stop()


@pytest.fixture
def s3_auth_env(
    s3_auth_server: RunningS3Server, monkeypatch: pytest.MonkeyPatch
) -> RunningS3Server:
    """Point the storage env vars at ``s3_auth_server`` with its valid keys for one test."""
    return _set_env(monkeypatch, s3_auth_server)
