"""ppminilm.storage settings from the standard AWS environment: endpoint, region and the
credential chain (static keys, web identity / IRSA, container, shared credentials file)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from ppminilm.storage.errors import StorageConfigError
from ppminilm.storage.s3 import S3Settings, S3Store

KEYS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}


def test_standard_endpoint_and_region_variables():
    s = S3Settings.from_env({**KEYS, "AWS_ENDPOINT_URL": "http://ppminilm-minio:9000",
                             "AWS_DEFAULT_REGION": "eu-west-1"})  # fmt: skip
    assert (s.endpoint, s.secure, s.region) == ("ppminilm-minio:9000", False, "eu-west-1")
    s3_only = S3Settings.from_env(
        {**KEYS, "AWS_ENDPOINT_URL": "http://other:1", "AWS_ENDPOINT_URL_S3": "https://s3.x"}
    )
    assert (s3_only.endpoint, s3_only.secure) == ("s3.x", True)
    ours = S3Settings.from_env({**KEYS, "PPMINILM_S3_ENDPOINT": "h:1", "AWS_ENDPOINT_URL": "x:2"})
    assert ours.endpoint == "h:1"  # the project's variable wins
    with pytest.raises(StorageConfigError, match="AWS_ENDPOINT_URL="):
        S3Settings.from_env({**KEYS, "AWS_ENDPOINT_URL": "ftp://h"})


def test_credential_chain_order(tmp_path: Path):
    base = {"AWS_ENDPOINT_URL": "http://h:1", "HOME": str(tmp_path)}
    token = tmp_path / "token"
    token.write_text("eyJ.fake.jwt")
    irsa = {
        **base,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
        "AWS_ROLE_ARN": "arn:aws:iam::1:role/r",
    }
    assert S3Settings.from_env({**irsa, **KEYS}).credential_source == "static"
    web = S3Settings.from_env(irsa)
    assert web.credential_source == "web-identity" and web.access_key == ""
    assert dict(web.provider_options)["role_arn"] == "arn:aws:iam::1:role/r"
    pod_identity = S3Settings.from_env(
        {**base, "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.23/v1/credentials"}
    )
    assert pod_identity.credential_source == "container"
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\naws_access_key_id=a\n")
    assert S3Settings.from_env(base).credential_source == "shared-file"
    with pytest.raises(StorageConfigError, match="AWS_ROLE_ARN"):
        S3Settings.from_env({**base, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)})
    with pytest.raises(StorageConfigError, match="AWS_ACCESS_KEY_ID"):
        S3Settings.from_env({"AWS_ENDPOINT_URL": "http://h:1", "HOME": str(tmp_path / "no")})
    assert "eyJ" not in repr(web)


def test_shared_credentials_file_reaches_the_store(s3_server, tmp_path: Path):
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[ci]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n"
    )
    settings = S3Settings.from_env({"PPMINILM_S3_ENDPOINT": s3_server.endpoint,
                                    "AWS_SHARED_CREDENTIALS_FILE": str(creds),
                                    "AWS_PROFILE": "ci"})  # fmt: skip
    store = S3Store(settings)
    if not store.client.bucket_exists("shared-file"):
        store.client.make_bucket("shared-file")
    store.put_bytes(b"hello", "s3://shared-file/a.txt")
    assert store.get_bytes("s3://shared-file/a.txt") == b"hello"


class _FakeSts(BaseHTTPRequestHandler):
    """AssumeRoleWithWebIdentity as STS (and MinIO's STS) answers it; records the query."""

    seen: ClassVar[list[dict]] = []
    keys: ClassVar[tuple[str, str]] = ("", "")

    def log_message(self, *args):
        pass

    def do_POST(self):
        query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
        type(self).seen.append(query)
        body = (
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
            f"<AccessKeyId>{self.keys[0]}</AccessKeyId><SecretAccessKey>{self.keys[1]}"
            "</SecretAccessKey><SessionToken>tok</SessionToken>"
            "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials>"
            "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_web_identity_token_is_exchanged_for_keys(s3_server, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("eyJ.projected.sa-token")
    _FakeSts.seen, _FakeSts.keys = [], (s3_server.access_key, s3_server.secret_key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeSts)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        settings = S3Settings.from_env({
            "PPMINILM_S3_ENDPOINT": s3_server.endpoint,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
            "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/ppminilm",
            "AWS_ENDPOINT_URL_STS": f"http://127.0.0.1:{httpd.server_address[1]}",
        })  # fmt: skip
        store = S3Store(settings)
        if not store.client.bucket_exists("web-identity"):
            store.client.make_bucket("web-identity")
        store.put_bytes(b"x", "s3://web-identity/k")
    finally:
        httpd.shutdown()
        httpd.server_close()
    (query,) = _FakeSts.seen
    assert query["Action"] == "AssumeRoleWithWebIdentity"
    assert query["WebIdentityToken"] == "eyJ.projected.sa-token"
    assert query["RoleArn"] == "arn:aws:iam::123456789012:role/ppminilm"
