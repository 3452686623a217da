"""The directory publish protocol against moto: versions, leftovers, older manifests.

(Killed publishes are in test_storage_kill.py; this file runs in the fast tier.)
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import minio
import pytest
from s3server import RunningS3Server

from ppminilm import storage
from ppminilm.errors import UserError


@pytest.fixture
def client(s3_env: RunningS3Server) -> minio.Minio:
    return minio.Minio(
        s3_env.endpoint, s3_env.access_key, s3_env.secret_key, secure=False, region="us-east-1"
    )


@pytest.fixture
def bucket(client: minio.Minio) -> str:
    name = f"pub-{uuid.uuid4().hex[:12]}"
    client.make_bucket(name)
    return name


def _keys(client: minio.Minio, bucket: str) -> list[str]:
    return sorted(str(o.object_name) for o in client.list_objects(bucket, recursive=True))


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def _read(prefix: str, dest: Path) -> dict[str, str]:
    storage.download_dir(prefix, dest)
    return {
        p.relative_to(dest).as_posix(): p.read_text()
        for p in dest.rglob("*")
        if p.is_file() and not p.name.startswith((".", "_"))
    }


def test_republish_replaces_the_version_whole(
    client: minio.Minio, bucket: str, tmp_path: Path
) -> None:
    prefix = f"s3://{bucket}/model"
    storage.upload_dir(_tree(tmp_path / "v1", {"a.txt": "1", "sub/old.txt": "gone in v2"}), prefix)
    manifest = storage.upload_dir(_tree(tmp_path / "v2", {"a.txt": "2", "b.txt": "new"}), prefix)
    assert _read(prefix, tmp_path / "r") == {"a.txt": "2", "b.txt": "new"}
    assert _keys(client, bucket) == ["model/_SUCCESS", "model/a.txt", "model/b.txt"]
    assert manifest["format"] == "ppminilm-artifact/2" and "superseded" not in manifest
    assert all("key" not in e for e in storage.read_json(f"{prefix}/_SUCCESS")["files"])


def test_leftovers_of_older_releases_are_hidden_and_cleaned(
    client: minio.Minio, bucket: str, tmp_path: Path
) -> None:
    """Older releases left ``<key>.tmp-<uuid>`` objects; they are never data."""
    prefix = f"s3://{bucket}/model"
    storage.upload_dir(_tree(tmp_path / "v1", {"a.txt": "1"}), prefix)
    stray = f"model/a.txt.tmp-{uuid.uuid4().hex}"
    client.put_object(bucket, stray, io.BytesIO(b"half"), 4)
    assert f"s3://{bucket}/{stray}" not in storage.list_uris(prefix + "/")
    assert _read(prefix, tmp_path / "r") == {"a.txt": "1"}
    storage.upload_dir(_tree(tmp_path / "v2", {"a.txt": "2"}), prefix)
    assert _keys(client, bucket) == ["model/_SUCCESS", "model/a.txt"]


def test_a_version_one_manifest_is_read_and_replaced(
    client: minio.Minio, bucket: str, tmp_path: Path
) -> None:
    """What an older release published (manifest format /1, no keys) stays readable."""
    import hashlib

    data = b"weights"
    entry = {"path": "w.bin", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    old = {"format": "ppminilm-artifact/1", "files": [entry], "total_bytes": len(data)}
    client.put_object(bucket, "m/w.bin", io.BytesIO(data), len(data))
    raw = json.dumps(old).encode()
    client.put_object(bucket, "m/_SUCCESS", io.BytesIO(raw), len(raw))
    assert _read(f"s3://{bucket}/m", tmp_path / "r") == {"w.bin": "weights"}
    storage.upload_dir(_tree(tmp_path / "v2", {"x.txt": "new"}), f"s3://{bucket}/m")
    assert _keys(client, bucket) == ["m/_SUCCESS", "m/x.txt"]


def test_publishing_over_a_users_upload_is_refused(
    client: minio.Minio, bucket: str, tmp_path: Path
) -> None:
    client.put_object(bucket, "teacher/weights.bin", io.BytesIO(b"mine"), 4)
    with pytest.raises(UserError, match="did not publish"):
        storage.upload_dir(_tree(tmp_path / "v", {"a.txt": "1"}), f"s3://{bucket}/teacher")
    assert _keys(client, bucket) == ["teacher/weights.bin"]
    # ... while reading it works, as it is.
    assert _read(f"s3://{bucket}/teacher", tmp_path / "r") == {"weights.bin": "mine"}


def test_kind_travels_with_the_artifact(bucket: str, tmp_path: Path) -> None:
    from ppminilm.io import staged_dir, staged_kind

    with staged_dir(tmp_path / "model", kind="model") as tmp:
        (tmp / "w.bin").write_text("w")
    storage.upload_dir(tmp_path / "model", f"s3://{bucket}/model")
    assert storage.read_json(f"s3://{bucket}/model/_SUCCESS")["kind"] == "model"
    storage.download_dir(f"s3://{bucket}/model", tmp_path / "back")
    assert staged_kind(tmp_path / "back") == "model"
