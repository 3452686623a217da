"""Fault cases of object storage and copies (against the test S3 server, moto)."""

from __future__ import annotations

import io
import json
import socket
import uuid
from pathlib import Path
from typing import Any

from faultmatrix.common import USER, _finetune, _write
from faultmatrix.fixtures import Fixtures
from faultmatrix.runner import Call, case

#: Exit codes of the storage errors (ppminilm.storage.errors).
CONFIG, UNREACHABLE, AUTH, NO_BUCKET, NO_OBJECT, INCOMPLETE = 11, 12, 13, 14, 15, 16


def s3_env(server: Any, **extra: str | None) -> dict[str, str | None]:
    """The storage environment pointing at ``server`` with a tiny retry policy."""
    env: dict[str, str | None] = {
        "PPMINILM_S3_ENDPOINT": server.endpoint,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_REGION": "us-east-1",
        "PPMINILM_S3_MAX_ATTEMPTS": "2",
        "PPMINILM_S3_BACKOFF_S": "0.01",
        "PPMINILM_S3_SECURE": None,
        "AWS_SESSION_TOKEN": None,
        "PPMINILM_S3_TIMEOUT_S": None,
    }
    env.update(extra)
    return env


def _client(server: Any) -> Any:
    import minio

    return minio.Minio(
        server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1"
    )


def _bucket(server: Any) -> str:
    name = f"fm-{uuid.uuid4().hex[:12]}"
    _client(server).make_bucket(name)
    return name


def _put(server: Any, bucket: str, key: str, data: bytes) -> None:
    _client(server).put_object(bucket, key, io.BytesIO(data), len(data))


def _published(fx: Fixtures, root: Path, bucket: str, prefix: str) -> str:
    """Publish the tiny task directory at ``s3://bucket/prefix`` with the project's writer."""
    from faultmatrix.runner import invoke

    uri = f"s3://{bucket}/{prefix}"
    code, out = invoke(["storage", "cp", str(fx.get("task")), uri], s3_env(fx.s3))
    if code != 0:
        raise RuntimeError(f"could not publish the fixture: {out}")
    return uri


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- local copies


@case("storage")
def cp_to_a_path_under_a_file(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    blocker = _write(root / "blocker", "a file")
    return Call(["storage", "cp", str(src), str(blocker / "x" / "dst.txt")], [str(blocker)], USER)


@case("storage")
def cp_missing_source(fx: Fixtures, root: Path) -> Call:
    missing = root / "nothing-here"
    return Call(["storage", "cp", str(missing), str(root / "dst")], [str(missing)])


@case("storage")
def cp_dir_into_user_dir(fx: Fixtures, root: Path) -> Call:
    task = fx.copy("task", root / "task")
    _write(root / "mine" / "notes.txt", "keep me")
    return Call(["storage", "cp", str(task), str(root / "mine")], [str(root / "mine")], USER)


@case("storage")
def cp_unsupported_scheme(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    return Call(["storage", "cp", str(src), "gs://bucket/key"], ["gs://bucket/key"], USER)


# --------------------------------------------------------------------------- settings


@case("storage")
def s3_endpoint_not_set(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    env = s3_env(fx.s3, PPMINILM_S3_ENDPOINT=None)
    return Call(
        ["storage", "cp", str(src), "s3://bucket/key"], ["PPMINILM_S3_ENDPOINT"], CONFIG, env
    )


@case("storage")
def s3_endpoint_with_path(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    env = s3_env(fx.s3, PPMINILM_S3_ENDPOINT="http://127.0.0.1:9000/minio")
    return Call(
        ["storage", "cp", str(src), "s3://bucket/key"], ["PPMINILM_S3_ENDPOINT"], CONFIG, env
    )


@case("storage")
def s3_max_attempts_not_a_number(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    env = s3_env(fx.s3, PPMINILM_S3_MAX_ATTEMPTS="many")
    argv = ["storage", "cp", str(src), "s3://bucket/key"]
    return Call(argv, ["PPMINILM_S3_MAX_ATTEMPTS"], CONFIG, env)


@case("storage")
def s3_endpoint_unreachable(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    endpoint = f"127.0.0.1:{_closed_port()}"
    env = s3_env(fx.s3, PPMINILM_S3_ENDPOINT=endpoint)
    return Call(["storage", "cp", str(src), "s3://bucket/key"], [endpoint], UNREACHABLE, env)


@case("storage")
def s3_wrong_secret(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3_auth)
    src = _write(root / "src.txt", "hello")
    env = s3_env(fx.s3_auth, AWS_SECRET_ACCESS_KEY="not-the-secret")
    argv = ["storage", "cp", str(src), f"s3://{bucket}/key"]
    return Call(argv, ["AWS_SECRET_ACCESS_KEY"], AUTH, env, [(fx.s3_auth, bucket)])


# --------------------------------------------------------------------------- buckets and objects


@case("storage")
def s3_bucket_missing(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    argv = ["storage", "cp", str(src), "s3://no-such-bucket-fm/key"]
    return Call(argv, ["no-such-bucket-fm"], NO_BUCKET, s3_env(fx.s3))


@case("storage")
def s3_invalid_bucket_name(fx: Fixtures, root: Path) -> Call:
    src = _write(root / "src.txt", "hello")
    return Call(
        ["storage", "cp", str(src), "s3://Bad_Bucket/key"], ["Bad_Bucket"], USER, s3_env(fx.s3)
    )


@case("storage")
def s3_ls_bucket_missing(fx: Fixtures, root: Path) -> Call:
    return Call(
        ["storage", "ls", "s3://no-such-bucket-fm/x/"],
        ["no-such-bucket-fm"],
        NO_BUCKET,
        s3_env(fx.s3),
    )


@case("storage")
def s3_missing_single_object(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = f"s3://{bucket}/models/weights.bin"
    argv = ["storage", "cp", uri, str(root / "weights.bin")]
    return Call(argv, [uri, "no object"], NO_OBJECT, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_half_published_artifact(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = _published(fx, root, bucket, "task")
    _client(fx.s3).remove_object(bucket, "task/_SUCCESS")
    _put(fx.s3, bucket, "task/_PUBLISHING", json.dumps({"started": 0}).encode())
    argv = ["storage", "cp", uri, str(root / "task-copy")]
    return Call(argv, [uri, "incomplete"], INCOMPLETE, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_manifest_not_json(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = _published(fx, root, bucket, "task")
    _put(fx.s3, bucket, "task/_SUCCESS", b'{"files": [')
    argv = ["storage", "cp", uri, str(root / "task-copy")]
    return Call(argv, [f"{uri}/_SUCCESS"], INCOMPLETE, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_object_differs_from_manifest(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = _published(fx, root, bucket, "task")
    _put(fx.s3, bucket, "task/train.json", b'{"tampered": true}\n')
    argv = ["storage", "cp", uri, str(root / "task-copy")]
    return Call(argv, [f"{uri}/train.json"], INCOMPLETE, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_manifest_escapes_prefix(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    manifest = {"format": "ppminilm-artifact/1", "files": [{"path": "../etc/passwd", "size": 1}]}
    _put(fx.s3, bucket, "evil/_SUCCESS", json.dumps(manifest).encode())
    argv = ["storage", "cp", f"s3://{bucket}/evil", str(root / "evil")]
    return Call(argv, ["../etc/passwd"], INCOMPLETE, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_download_into_user_dir(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = _published(fx, root, bucket, "task")
    _write(root / "mine" / "notes.txt", "keep me")
    argv = ["storage", "cp", uri, str(root / "mine")]
    return Call(argv, [str(root / "mine")], USER, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_publish_over_user_upload(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    _put(fx.s3, bucket, "teacher/model_state.pdparams", b"user weights")
    _put(fx.s3, bucket, "teacher/vocab.txt", b"[PAD]\n")
    task = fx.copy("task", root / "task")
    argv = ["storage", "cp", str(task), f"s3://{bucket}/teacher"]
    return Call(argv, [f"s3://{bucket}/teacher"], USER, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def config_uri_missing(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = f"s3://{bucket}/configs/finetune.json"
    call = Call(_finetune(fx, root, "--config", uri), [uri], NO_OBJECT, s3_env(fx.s3))
    call.buckets = [(fx.s3, bucket)]
    return call


@case("storage")
def config_uri_bad_json(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    _put(fx.s3, bucket, "configs/finetune.json", b'{"seed": 1,\n "max_steps": }')
    uri = f"s3://{bucket}/configs/finetune.json"
    call = Call(_finetune(fx, root, "--config", uri), [f"{uri}:2:"], USER, s3_env(fx.s3))
    call.buckets = [(fx.s3, bucket)]
    return call


@case("storage")
def distill_remote_corpus_missing(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = f"s3://{bucket}/corpus"
    argv = [
        "distill", "--corpus", uri, "--teacher", str(fx.copy("teacher", root / "teacher")),
        "--out", str(root / "student"), "--config", str(fx.get("distill-config")),
    ]  # fmt: skip
    return Call(argv, [uri], NO_OBJECT, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_to_s3_source_missing(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    src, dst = f"s3://{bucket}/nothing", f"s3://{bucket}/copy"
    return Call(["storage", "cp", src, dst], [src], NO_OBJECT, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_cp_into_a_local_file(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = _published(fx, root, bucket, "task")
    blocker = _write(root / "blocker", "a file")
    argv = ["storage", "cp", uri, str(blocker)]
    return Call(argv, [str(blocker)], USER, s3_env(fx.s3), [(fx.s3, bucket)])


@case("storage")
def s3_config_not_utf8(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    _put(fx.s3, bucket, "configs/finetune.json", b'{"seed": 1,\n "task": "\xff"}')
    uri = f"s3://{bucket}/configs/finetune.json"
    call = Call(_finetune(fx, root, "--config", uri), [f"{uri}:2"], USER, s3_env(fx.s3))
    call.buckets = [(fx.s3, bucket)]
    return call


@case("storage")
def s3_remote_teacher_half_published(fx: Fixtures, root: Path) -> Call:
    bucket = _bucket(fx.s3)
    uri = f"s3://{bucket}/teacher"
    _put(fx.s3, bucket, "teacher/model_config.json", b"{}")
    _put(fx.s3, bucket, "teacher/_PUBLISHING", b"{}")
    argv = [
        "distill", "--corpus", str(fx.copy("corpus", root / "corpus")), "--teacher", uri,
        "--out", str(root / "student"), "--config", str(fx.get("distill-config")),
    ]  # fmt: skip
    return Call(argv, [uri, "incomplete"], INCOMPLETE, s3_env(fx.s3), [(fx.s3, bucket)])
