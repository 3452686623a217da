"""Kill real uploads mid-way (SIGKILL and SIGTERM) and check nothing published is lost.

Each case publishes version 1 of an artifact to the test S3 server (moto), then runs
``ppminilm storage cp`` for version 2 in a child process (tests/storage_kill_child.py) that
signals itself at a named point of the publish. Files are above 5 MiB, so they go up as
multipart uploads. Afterwards, checked with boto3 as an independent client:

* the prefix reads as exactly version 1 (killed before the switch) or exactly version 2
  (after it), byte for byte;
* after SIGTERM the child exits 143 with one error line, no traceback, and leaves no
  multipart upload and no publish machinery behind;
* after SIGKILL whatever it left is invisible to readers, and the next publish aborts the
  stale multipart uploads and removes the leftovers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from s3server import RunningS3Server

from ppminilm import storage
from ppminilm.errors import EXIT_PREEMPTED

pytestmark = pytest.mark.integration

#: Above minio's 5 MiB part size: each of these goes up as a 2-part multipart upload.
BIG = 5 * 1024 * 1024 + 512 * 1024
CHILD = Path(__file__).resolve().parents[1] / "storage_kill_child.py"
#: A killed child must be gone within this (a stuck cleanup would be a bug too).
CHILD_TIMEOUT_S = 120


def _boto(server: RunningS3Server) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=f"http://{server.endpoint}",
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )


def _objects(server: RunningS3Server, bucket: str) -> dict[str, str]:
    pages = _boto(server).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


def _uploads(server: RunningS3Server, bucket: str) -> list[str]:
    found = _boto(server).list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u["Key"] for u in found]


def _tree(root: Path, version: int) -> dict[str, bytes]:
    """Two big files and two small ones; every byte depends on ``version``."""
    files = {
        "model_state.pdparams": os.urandom(16) * (BIG // 16),
        "optimizer/moments.bin": bytes([version]) * (BIG - 1),
        "model_config.json": f'{{"version": {version}}}'.encode(),
    }
    if version == 1:
        files["only_in_v1.txt"] = b"dropped by version 2"
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _read_back(prefix: str, dest: Path) -> dict[str, bytes]:
    storage.download_dir(prefix, dest)
    return {
        p.relative_to(dest).as_posix(): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and not p.name.startswith((".", "_"))
    }


def _child(point: str, sig: str, src: Path, dst: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), point, sig, str(src), dst],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env=dict(os.environ),
    )


def _check_exit(proc: subprocess.CompletedProcess[str], sig: str) -> None:
    output = proc.stdout + proc.stderr
    if sig == "SIGKILL":
        assert proc.returncode == -9, output
        return
    assert proc.returncode == EXIT_PREEMPTED, output
    assert "Traceback" not in output and "C++ Traceback" not in output, output
    assert "received SIGTERM" in output, output


@pytest.fixture
def bucket(s3_env: RunningS3Server) -> str:
    name = f"kill-{uuid.uuid4().hex[:12]}"
    _boto(s3_env).create_bucket(Bucket=name)
    return name


#: Kill points of a re-publish (version 1 is there) and which version must read back.
REPUBLISH_POINTS = [
    ("part", 1),
    ("file:1", 1),
    ("file:3", 1),  # every file staged, the manifest not switched yet
    ("switched", 2),
    ("copied", 2),
    ("final", 2),
]


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize(("point", "readable"), REPUBLISH_POINTS)
def test_killed_republish_keeps_a_whole_version(
    s3_env: RunningS3Server, bucket: str, tmp_path: Path, point: str, readable: int, sig: str
) -> None:
    prefix = f"s3://{bucket}/runs/model"
    v1 = _tree(tmp_path / "v1", 1)
    v2 = _tree(tmp_path / "v2", 2)
    storage.upload_dir(tmp_path / "v1", prefix)
    published = _objects(s3_env, bucket)

    _check_exit(_child(point, sig, tmp_path / "v2", prefix), sig)

    expected = v1 if readable == 1 else v2
    assert _read_back(prefix, tmp_path / "read") == expected
    if sig == "SIGTERM":
        assert _uploads(s3_env, bucket) == []
        if readable == 1:  # nothing of the interrupted publish is left
            assert _objects(s3_env, bucket) == published
    visible = {u.split(f"{bucket}/", 1)[1] for u in storage.list_uris(f"s3://{bucket}/")}
    assert all(".ppminilm-staging" not in k and not k.endswith("_PUBLISHING") for k in visible)

    # The next publish cleans what a killed one left (SIGKILL: open uploads, staging objects).
    v3 = _tree(tmp_path / "v3", 3)
    storage.upload_dir(tmp_path / "v3", prefix)
    assert _uploads(s3_env, bucket) == []
    assert sorted(_objects(s3_env, bucket)) == sorted(f"runs/model/{r}" for r in [*v3, "_SUCCESS"])
    assert _read_back(prefix, tmp_path / "read3") == v3


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("point", ["part", "file:2"])
def test_killed_first_publish_is_never_read_as_data(
    s3_env: RunningS3Server, bucket: str, tmp_path: Path, point: str, sig: str
) -> None:
    prefix = f"s3://{bucket}/fresh"
    _tree(tmp_path / "v1", 1)

    _check_exit(_child(point, sig, tmp_path / "v1", prefix), sig)

    if sig == "SIGTERM":  # taken back whole
        assert _objects(s3_env, bucket) == {} and _uploads(s3_env, bucket) == []
        with pytest.raises(storage.ObjectNotFoundError):
            storage.download_dir(prefix, tmp_path / "read")
    else:  # what is left says "unfinished publish", never "a user's upload"
        with pytest.raises(storage.IncompleteArtifactError, match="unfinished publish"):
            storage.download_dir(prefix, tmp_path / "read")
    v2 = _tree(tmp_path / "v2", 2)
    storage.upload_dir(tmp_path / "v2", prefix)
    assert _uploads(s3_env, bucket) == []
    assert _read_back(prefix, tmp_path / "read2") == v2
    assert sorted(_objects(s3_env, bucket)) == sorted(f"fresh/{r}" for r in [*v2, "_SUCCESS"])


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_single_file_upload_keeps_the_old_object(
    s3_env: RunningS3Server, bucket: str, tmp_path: Path, sig: str
) -> None:
    uri = f"s3://{bucket}/weights/model.bin"
    old, new = tmp_path / "old.bin", tmp_path / "new.bin"
    old.write_bytes(os.urandom(BIG))
    new.write_bytes(os.urandom(BIG))
    storage.upload_file(old, uri)

    _check_exit(_child("part", sig, new, uri), sig)

    storage.download_file(uri, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == old.read_bytes()
    assert sorted(_objects(s3_env, bucket)) == ["weights/model.bin"]  # no .tmp object
    if sig == "SIGTERM":
        assert _uploads(s3_env, bucket) == []
    storage.upload_file(new, uri)  # the next upload of the key aborts what SIGKILL left
    assert _uploads(s3_env, bucket) == []
    storage.download_file(uri, tmp_path / "back2.bin")
    assert (tmp_path / "back2.bin").read_bytes() == new.read_bytes()
