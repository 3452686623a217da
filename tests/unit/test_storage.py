"""ppminilm.storage against a real S3 API (moto's server on 127.0.0.1) and local paths.

No client is mocked: every remote call goes through the minio client over HTTP. Failure
injection uses real server behaviour: a closed port, an auth-enforcing server with wrong keys,
and an IAM user denied writes under ``*/forbidden/`` (see tests/s3server.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import time
import traceback
import uuid
from pathlib import Path

import minio
import pytest
import urllib3
from minio.error import S3Error, ServerError
from s3server import FORBIDDEN_SEGMENT, RunningS3Server

from ppminilm import storage
from ppminilm.cli import storage as storage_cli
from ppminilm.io import STAGED_MARKER
from ppminilm.storage import (
    BucketNotFoundError,
    IncompleteArtifactError,
    ObjectNotFoundError,
    S3Settings,
    StorageAuthError,
    StorageConfigError,
    StorageUnreachableError,
)
from ppminilm.storage.errors import translate_error

#: A failing call against a closed port (2 attempts, 10 ms backoff) must finish within this.
UNREACHABLE_MAX_S = 5.0
STORAGE_ENV = (
    "PPMINILM_S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "PPMINILM_S3_SECURE",
)


def _client(server: RunningS3Server) -> minio.Minio:
    return minio.Minio(
        server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1"
    )


def _new_bucket(server: RunningS3Server) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    _client(server).make_bucket(name)
    return name


@pytest.fixture
def bucket(s3_env: RunningS3Server) -> str:
    return _new_bucket(s3_env)


@pytest.fixture
def auth_bucket(s3_auth_env: RunningS3Server) -> str:
    return _new_bucket(s3_auth_env)


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": json.dumps({"layers": 6, "hidden": 768}).encode(),
        "vocab.txt": "[PAD]\n[UNK]\n中\n文\n".encode(),
        "weights/model.pdparams": bytes(range(256)) * 64,
        "weights/deep/empty.bin": b"",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (storage.SUCCESS_MARKER, STAGED_MARKER)
    }


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_secret_hidden(secret: str, exc: BaseException, log_text: str) -> None:
    shown = "".join(traceback.format_exception(exc)) + repr(exc) + str(exc) + log_text
    assert secret not in shown


# --------------------------------------------------------------------------- URIs, settings


@pytest.mark.parametrize(
    ("uri", "remote"),
    [("s3://bkt/k", True), ("minio://bkt/a/b", True), ("/tmp/x", False), ("rel/x.json", False)],
)
def test_is_remote(uri: str, remote: bool) -> None:
    assert storage.is_remote(uri) is remote
    assert storage.is_remote(Path(uri) if not remote else uri) is remote


@pytest.mark.parametrize("uri", ["gs://bkt/k", "http://host/k"])
def test_is_remote_rejects_other_schemes(uri: str) -> None:
    with pytest.raises(ValueError, match=re.escape(uri)):
        storage.is_remote(uri)


def test_parse_uri() -> None:
    assert storage.parse_uri("s3://bkt/a/b.txt") == ("bkt", "a/b.txt")
    assert storage.parse_uri("minio://my.bucket-1/x") == ("my.bucket-1", "x")
    assert storage.parse_uri("s3://bkt") == ("bkt", "")
    assert storage.parse_uri("s3://bkt/") == ("bkt", "")


@pytest.mark.parametrize(
    "uri", ["s3://", "s3://Bad/k", "s3://ab/k", "/local/path", "s3://bkt//k", "gs://bkt/k"]
)
def test_parse_uri_rejects_bad_uris(uri: str) -> None:
    with pytest.raises(ValueError, match=re.escape(uri)):
        storage.parse_uri(uri)


def test_settings_from_env() -> None:
    base = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}
    plain = S3Settings.from_env({**base, "PPMINILM_S3_ENDPOINT": "127.0.0.1:9000"})
    assert (plain.endpoint, plain.secure, plain.region) == ("127.0.0.1:9000", False, "us-east-1")
    https = S3Settings.from_env({**base, "PPMINILM_S3_ENDPOINT": "https://s3.example.com"})
    assert (https.endpoint, https.secure) == ("s3.example.com", True)
    http = S3Settings.from_env(
        {**base, "PPMINILM_S3_ENDPOINT": "http://minio.ppminilm:9000", "AWS_REGION": "eu-west-1"}
    )
    assert (http.endpoint, http.secure, http.region) == ("minio.ppminilm:9000", False, "eu-west-1")
    forced = S3Settings.from_env({**base, "PPMINILM_S3_ENDPOINT": "h:1", "PPMINILM_S3_SECURE": "1"})
    assert forced.secure is True
    for shown in (repr(plain), str(plain), f"{plain}"):
        assert "s3cr3t-value" not in shown
        assert "127.0.0.1:9000" in shown


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "PPMINILM_S3_ENDPOINT"),
        ({"PPMINILM_S3_ENDPOINT": "h:1"}, "AWS_ACCESS_KEY_ID"),
        ({"PPMINILM_S3_ENDPOINT": "ftp://h:1", "AWS_ACCESS_KEY_ID": "a"}, "PPMINILM_S3_ENDPOINT"),
        ({"PPMINILM_S3_ENDPOINT": "https://h", "PPMINILM_S3_SECURE": "0"}, "PPMINILM_S3_SECURE"),
    ],
)
def test_settings_errors_name_the_variable(env: dict[str, str], named: str) -> None:
    env = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value", **env}
    with pytest.raises(StorageConfigError, match=named) as info:
        S3Settings.from_env(env)
    assert "s3cr3t-value" not in str(info.value)


# --------------------------------------------------------------------------- local paths


def test_local_paths_need_no_s3_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in STORAGE_ENV:
        monkeypatch.delenv(name, raising=False)
    storage.write_text(tmp_path / "a" / "note.txt", "你好")
    assert storage.read_text(tmp_path / "a" / "note.txt") == "你好"
    storage.write_json(str(tmp_path / "m.json"), {"acc": 0.75, "task": "tnews"})
    assert storage.read_json(tmp_path / "m.json") == {"acc": 0.75, "task": "tnews"}
    storage.upload_file(tmp_path / "m.json", tmp_path / "copy" / "m.json")
    assert storage.download_file(tmp_path / "copy" / "m.json", tmp_path / "back.json").exists()
    assert storage.exists(tmp_path / "back.json") and not storage.exists(tmp_path / "nope")

    files = _make_tree(tmp_path / "src")
    manifest = storage.upload_dir(tmp_path / "src", tmp_path / "published")
    assert {e["path"] for e in manifest["files"]} == set(files)
    storage.download_dir(tmp_path / "published", tmp_path / "fetched")
    storage.copy_tree(tmp_path / "src", tmp_path / "tree")
    assert _read_tree(tmp_path / "fetched") == files == _read_tree(tmp_path / "tree")
    listed = storage.list_uris(tmp_path / "published")
    assert str(tmp_path / "published" / storage.SUCCESS_MARKER) in listed
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]  # no temp files left

    with pytest.raises(ObjectNotFoundError, match=re.escape("missing.txt")):
        storage.read_text(tmp_path / "missing.txt")
    # A plain directory (no manifest) is read as it is; an unfinished publish is refused.
    storage.download_dir(tmp_path / "src", tmp_path / "x")
    assert _read_tree(tmp_path / "x") == files
    (tmp_path / "src" / storage.PUBLISHING_MARKER).write_text("{}")
    with pytest.raises(IncompleteArtifactError, match="incomplete artifact"):
        storage.download_dir(tmp_path / "src", tmp_path / "y")


# --------------------------------------------------------------------------- remote roundtrips


@pytest.mark.parametrize("scheme", ["s3", "minio"])
def test_file_roundtrip(scheme: str, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "model.pdparams"
    local.write_bytes(b"\x00weights" * 1000)
    uri = f"{scheme}://{bucket}/runs/1/model.pdparams"
    assert not storage.exists(uri)
    storage.upload_file(local, uri)
    assert storage.exists(uri)
    assert storage.download_file(uri, tmp_path / "back" / "m").read_bytes() == local.read_bytes()
    assert storage.list_uris(f"{scheme}://{bucket}/runs/") == [uri]  # temp key is gone

    local.write_bytes(b"new content")
    storage.upload_file(local, uri)
    assert storage.download_file(uri, tmp_path / "again").read_bytes() == b"new content"
    storage.copy_file(uri, f"{scheme}://{bucket}/copied/m")
    assert storage.read_text(f"{scheme}://{bucket}/copied/m") == "new content"


def test_text_and_json_roundtrip(bucket: str) -> None:
    storage.write_text(f"s3://{bucket}/notes/readme.md", "# 报告\n准确率 0.75\n")
    assert storage.read_text(f"s3://{bucket}/notes/readme.md") == "# 报告\n准确率 0.75\n"
    value = {"task": "afqmc", "labels": ["0", "1"], "metrics": {"acc": 0.7354}, "中文": True}
    storage.write_json(f"minio://{bucket}/metrics.json", value)
    assert storage.read_json(f"s3://{bucket}/metrics.json") == value
    with pytest.raises(
        ValueError, match=re.escape(f"s3://{bucket}/notes/readme.md:1:1: invalid JSON")
    ):
        storage.read_json(f"s3://{bucket}/notes/readme.md")


def test_dir_roundtrip_with_manifest(bucket: str, tmp_path: Path) -> None:
    files = _make_tree(tmp_path / "model")
    prefix = f"s3://{bucket}/models/student"
    manifest = storage.upload_dir(tmp_path / "model", prefix)
    assert storage.read_json(f"{prefix}/_SUCCESS") == manifest
    assert manifest["total_bytes"] == sum(len(d) for d in files.values())
    by_path = {e["path"]: e for e in manifest["files"]}
    assert by_path["weights/deep/empty.bin"]["size"] == 0
    assert len(by_path["config.json"]["sha256"]) == 64
    assert storage.list_uris(prefix + "/") == sorted(
        [f"{prefix}/{rel}" for rel in files] + [f"{prefix}/_SUCCESS"]
    )

    written = storage.download_dir(prefix + "/", tmp_path / "fetched")
    assert (tmp_path / "fetched" / "_SUCCESS") in written
    assert _read_tree(tmp_path / "fetched") == files

    storage.copy_tree(prefix, f"minio://{bucket}/models/copy")  # remote -> remote
    storage.copy_tree(f"s3://{bucket}/models/copy", tmp_path / "copy")  # remote -> local
    assert _read_tree(tmp_path / "copy") == files


def test_download_dir_reads_a_user_upload_as_it_is(bucket: str, tmp_path: Path) -> None:
    """Objects without a manifest (``aws s3 cp --recursive``) are a user's upload: read them."""
    (tmp_path / "part.txt").write_text("uploaded by hand")
    storage.upload_file(tmp_path / "part.txt", f"s3://{bucket}/by-hand/part.txt")
    got = storage.download_dir(f"s3://{bucket}/by-hand", tmp_path / "out")
    assert got == [tmp_path / "out" / "part.txt"]
    assert (tmp_path / "out" / "part.txt").read_text() == "uploaded by hand"


def test_download_dir_refuses_an_unfinished_publish(bucket: str, tmp_path: Path) -> None:
    """Our in-progress marker without a manifest: never read as a user upload."""
    storage.write_text(f"s3://{bucket}/partial/part.txt", "half")
    storage.write_text(f"s3://{bucket}/partial/{storage.PUBLISHING_MARKER}", "{}")
    with pytest.raises(IncompleteArtifactError, match="unfinished publish") as info:
        storage.download_dir(f"s3://{bucket}/partial", tmp_path / "out")
    assert f"s3://{bucket}/partial" in str(info.value)
    assert not (tmp_path / "out").exists()
    got = storage.download_dir(f"s3://{bucket}/partial", tmp_path / "out", require_complete=False)
    assert got == [tmp_path / "out" / "part.txt"]


def test_download_dir_of_nothing_is_a_missing_object(bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFoundError, match=f"no object at s3://{bucket}/nothing"):
        storage.download_dir(f"s3://{bucket}/nothing", tmp_path / "out")


def test_download_dir_detects_files_not_matching_manifest(bucket: str, tmp_path: Path) -> None:
    _make_tree(tmp_path / "model")
    prefix = f"s3://{bucket}/tampered"
    storage.upload_dir(tmp_path / "model", prefix)
    storage.write_text(f"{prefix}/vocab.txt", "changed after publishing")
    with pytest.raises(IncompleteArtifactError, match=re.escape("vocab.txt")):
        storage.download_dir(prefix, tmp_path / "out")


def test_missing_object(bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{bucket}/no/such/key.json"
    assert storage.exists(uri) is False
    for call in (
        lambda: storage.download_file(uri, tmp_path / "x"),
        lambda: storage.read_json(uri),
    ):
        with pytest.raises(ObjectNotFoundError, match=re.escape(uri)) as info:
            call()
        assert info.value.exit_code == ObjectNotFoundError.exit_code
    assert not (tmp_path / "x").exists()


def test_missing_bucket(s3_env: RunningS3Server, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    uri = "s3://no-such-bucket-ppminilm/k"
    for call in (
        lambda: storage.upload_file(tmp_path / "f", uri),
        lambda: storage.read_text(uri),
        lambda: storage.exists(uri),
        lambda: storage.list_uris("s3://no-such-bucket-ppminilm/"),
        lambda: storage.download_dir("s3://no-such-bucket-ppminilm/run", tmp_path / "o"),
    ):
        with pytest.raises(BucketNotFoundError, match="no-such-bucket-ppminilm") as info:
            call()
        assert info.value.bucket == "no-such-bucket-ppminilm"


# ------------------------------------------------------------------ infrastructure failures


def test_unreachable_endpoint_fails_fast_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "unreachable-secret-" + uuid.uuid4().hex
    endpoint = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("PPMINILM_S3_ENDPOINT", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNREACHABLE00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("PPMINILM_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("PPMINILM_S3_BACKOFF_S", "0.01")
    caplog.set_level(logging.DEBUG)
    start = time.monotonic()
    with pytest.raises(StorageUnreachableError) as info:
        storage.read_text("s3://some-bucket/k")
    assert time.monotonic() - start < UNREACHABLE_MAX_S
    message = str(info.value)
    assert endpoint in message and "PPMINILM_S3_ENDPOINT" in message
    assert "attempt 1/2" in caplog.text  # retried once, then gave up
    _assert_secret_hidden(secret, info.value, caplog.text)


def _s3_error(code: str, status: int) -> S3Error:
    response = urllib3.HTTPResponse(body=b"", status=status)
    return S3Error(response, code, "msg", "/bkt/k", "req", "host", bucket_name="bkt")


@pytest.mark.parametrize(
    ("exc", "transient", "kind"),
    [
        (_s3_error("SlowDown", 503), True, StorageUnreachableError),
        (_s3_error("InternalError", 500), True, StorageUnreachableError),
        (
            ServerError("server failed with HTTP status code 502", 502),
            True,
            StorageUnreachableError,
        ),
        (ConnectionResetError("reset"), True, StorageUnreachableError),
        (_s3_error("InvalidAccessKeyId", 403), False, StorageAuthError),
        (_s3_error("SignatureDoesNotMatch", 403), False, StorageAuthError),
        (_s3_error("NoSuchBucket", 404), False, BucketNotFoundError),
        (_s3_error("NoSuchKey", 404), False, ObjectNotFoundError),
    ],
)
def test_error_classification(exc: Exception, transient: bool, kind: type) -> None:
    """Which client errors are retried (5xx, throttling, connection) and which are final."""
    retry, error = translate_error(exc, "http://127.0.0.1:9", "s3://bkt/k")
    assert retry is transient
    assert isinstance(error, kind)


@pytest.mark.integration
def test_auth_server_accepts_its_valid_keys(auth_bucket: str) -> None:
    storage.write_json(f"s3://{auth_bucket}/ok.json", {"ok": True})
    assert storage.read_json(f"s3://{auth_bucket}/ok.json") == {"ok": True}


@pytest.mark.integration
@pytest.mark.parametrize("wrong", ["secret", "access_key"])
def test_bad_credentials(
    wrong: str,
    auth_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad_secret = "wrong-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bad_secret)
    if wrong == "access_key":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StorageAuthError) as info:
        storage.read_text(f"s3://{auth_bucket}/anything.txt")
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
    assert "retrying" not in caplog.text  # auth errors are not retried
    _assert_secret_hidden(bad_secret, info.value, caplog.text)


def _use_restricted_user(server: RunningS3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    assert server.restricted_keys is not None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.restricted_keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.restricted_keys[1])


@pytest.mark.integration
def test_failed_file_upload_keeps_the_stored_object(
    s3_auth_env: RunningS3Server,
    auth_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = f"s3://{auth_bucket}/{FORBIDDEN_SEGMENT}/model.bin"
    storage.write_text(uri, "published v1")
    _use_restricted_user(s3_auth_env, monkeypatch)
    (tmp_path / "v2").write_bytes(b"v2" * 10_000)
    with pytest.raises(StorageAuthError):
        storage.upload_file(tmp_path / "v2", uri)
    assert storage.read_text(uri) == "published v1"
    assert storage.list_uris(f"s3://{auth_bucket}/") == [uri]  # no temp object left


@pytest.mark.integration
def test_failed_dir_upload_keeps_the_previous_version(
    s3_auth_env: RunningS3Server,
    auth_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"s3://{auth_bucket}/run"
    old = tmp_path / "old"
    (old / FORBIDDEN_SEGMENT).mkdir(parents=True)
    (old / FORBIDDEN_SEGMENT / "weights.bin").write_bytes(b"old weights")
    (old / "a_config.json").write_text('{"v": 1}')
    storage.upload_dir(old, prefix)
    before = storage.list_uris(prefix + "/")

    new = tmp_path / "new"
    (new / FORBIDDEN_SEGMENT).mkdir(parents=True)
    (new / "a_config.json").write_text('{"v": 2}')  # sorted first: uploaded before the failure
    (new / FORBIDDEN_SEGMENT / "weights.bin").write_bytes(b"new weights")
    _use_restricted_user(s3_auth_env, monkeypatch)
    with pytest.raises(StorageAuthError):
        storage.upload_dir(new, prefix)

    assert storage.list_uris(prefix + "/") == before
    storage.download_dir(prefix, tmp_path / "out")
    assert _read_tree(tmp_path / "out") == _read_tree(old)
    raw = minio.Minio(
        s3_auth_env.endpoint, *s3_auth_env.restricted_keys, secure=False, region="us-east-1"
    )
    left = [o.object_name for o in raw.list_objects(auth_bucket, prefix="run/", recursive=True)]
    assert sorted(left) == [
        "run/_SUCCESS",
        "run/a_config.json",
        f"run/{FORBIDDEN_SEGMENT}/weights.bin",
    ]


# --------------------------------------------------------------------------- CLI


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ppminilm")
    storage_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_cli_cp_and_ls(bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = _make_tree(tmp_path / "model")
    assert _cli("storage", "cp", str(tmp_path / "model"), f"s3://{bucket}/m") == 0
    assert _cli("storage", "cp", str(tmp_path / "model" / "vocab.txt"), f"s3://{bucket}/f/") == 0
    capsys.readouterr()
    assert _cli("storage", "ls", f"s3://{bucket}/") == 0
    listed = capsys.readouterr().out.splitlines()
    assert f"s3://{bucket}/m/_SUCCESS" in listed and f"s3://{bucket}/f/vocab.txt" in listed
    assert _cli("storage", "cp", f"s3://{bucket}/m", str(tmp_path / "back")) == 0
    assert _read_tree(tmp_path / "back") == files
    assert _cli("storage", "cp", f"s3://{bucket}/f/vocab.txt", str(tmp_path / "back")) == 0
    assert (tmp_path / "back" / "vocab.txt").read_bytes() == files["vocab.txt"]


def test_cli_exit_codes(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage.write_text(f"s3://{bucket}/partial/x.txt", "x")
    storage.write_text(f"s3://{bucket}/partial/{storage.PUBLISHING_MARKER}", "{}")
    assert _cli("storage", "cp", f"s3://{bucket}/partial", str(tmp_path / "o")) == 16
    assert _cli("storage", "cp", f"s3://{bucket}/nothing-here", str(tmp_path / "o")) == 15
    assert _cli("storage", "ls", "s3://no-such-bucket-ppminilm/") == 14
    assert _cli("storage", "cp", str(tmp_path / "missing"), f"s3://{bucket}/x") == 15
    monkeypatch.setenv("PPMINILM_S3_ENDPOINT", f"127.0.0.1:{_closed_port()}")
    assert _cli("storage", "ls", f"s3://{bucket}/") == 12
    monkeypatch.delenv("PPMINILM_S3_ENDPOINT")
    assert _cli("storage", "ls", f"s3://{bucket}/") == 11
    exit_codes = [
        cls.exit_code
        for cls in (
            storage.StorageError,
            StorageConfigError,
            StorageUnreachableError,
            StorageAuthError,
            BucketNotFoundError,
            ObjectNotFoundError,
            IncompleteArtifactError,
        )
    ]
    assert len(set(exit_codes)) == len(exit_codes) and 2 not in exit_codes


def test_cli_bad_uri_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from ppminilm.cli import main

    assert main(["storage", "ls", "gs://bkt/x"]) == 2


@pytest.mark.integration
def test_cli_auth_exit_code(auth_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "definitely-wrong")
    assert _cli("storage", "ls", f"s3://{auth_bucket}/") == 13
