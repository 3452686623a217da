"""Read and write artifacts on local paths and ``s3://`` / ``minio://`` URIs.

Every function takes either a local path or a URI ``s3://bucket/key`` (``minio://`` is a
synonym), so callers never branch on where an artifact lives. Remote access goes through the
``minio`` client, configured from the environment only (:class:`S3Settings`).

Publishing is atomic. One object is written with one PutObject (multipart above 5 MiB): S3
shows it only once complete, so its key holds the old object or the new one; an interrupted
multipart upload is aborted (and, after SIGKILL, by the next publish under the prefix). A
directory is published so that the previous version stays readable until the new one is
complete, with a ``_SUCCESS`` manifest (path, size, sha256 of every file) as the switch
(:mod:`ppminilm.storage.publish`, layout in :mod:`ppminilm.storage.layout`). Readers verify a
published directory against its manifest, read a user's upload (objects, no manifest) as it
is, and refuse an unfinished publish of ours. Local writes go through :mod:`ppminilm.io`.

Transient failures (connection errors, HTTP 5xx, ``SlowDown``) are retried with exponential
backoff; credential errors and missing buckets are not. Failures raise the
:class:`~ppminilm.storage.errors.StorageError` subclasses re-exported here.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ppminilm.io import atomic_write, decode_text, dumps_json, is_remote, loads_json
from ppminilm.storage.dirs import copy_tree, download_dir, upload_dir
from ppminilm.storage.errors import (
    BucketNotFoundError,
    IncompleteArtifactError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageConfigError,
    StorageError,
    StorageUnreachableError,
    WriteConflictError,
)
from ppminilm.storage.layout import PUBLISHING_MARKER, SUCCESS_MARKER, is_internal
from ppminilm.storage.s3 import S3Settings, S3Store, parse_uri

__all__ = [
    "PUBLISHING_MARKER",
    "SUCCESS_MARKER",
    "BucketNotFoundError",
    "IncompleteArtifactError",
    "ObjectNotFoundError",
    "S3Settings",
    "StorageAuthError",
    "StorageConfigError",
    "StorageError",
    "StorageUnreachableError",
    "WriteConflictError",
    "abort_uploads",
    "copy_file",
    "copy_tree",
    "download_dir",
    "download_file",
    "exists",
    "is_remote",
    "list_uris",
    "local_copy",
    "parse_uri",
    "put_bytes_if",
    "read_bytes_and_etag",
    "read_json",
    "read_text",
    "remove_if",
    "remove_tree",
    "upload_dir",
    "upload_file",
    "write_json",
    "write_text",
]

logger = logging.getLogger(__name__)

PathOrUri = str | os.PathLike[str]


def _store(settings: S3Settings | None) -> S3Store:
    return S3Store(settings or S3Settings.from_env())


# --------------------------------------------------------------------------- single objects


def upload_file(local: PathOrUri, uri: PathOrUri, *, settings: S3Settings | None = None) -> None:
    """Publish a local file at ``uri`` atomically.

    Args:
        local: Existing local file.
        uri: Destination URI, or a local path (then the file is copied atomically).
        settings: S3 settings; read from the environment when omitted.

    Raises:
        ObjectNotFoundError: If ``local`` is not a file.
        ValueError: If ``local`` is a URI or ``uri`` is malformed.
        StorageError: On storage failures (see the subclasses).
    """
    src, dst = os.fspath(local), os.fspath(uri)
    if is_remote(src):
        raise ValueError(f"upload_file source must be a local path, got {src!r}")
    if not os.path.isfile(src):
        raise ObjectNotFoundError(src)
    if not is_remote(dst):
        atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
        return
    store = _store(settings)
    store.abort_uploads(dst, exact=True)  # what a killed earlier upload of this key left
    store.put_file(src, dst)


def download_file(uri: PathOrUri, local: PathOrUri, *, settings: S3Settings | None = None) -> Path:
    """Fetch the object at ``uri`` into the local file ``local`` (written atomically).

    Args:
        uri: Source URI, or a local path (then the file is copied).
        local: Destination local file; parent directories are created.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The local path written.

    Raises:
        ObjectNotFoundError: If there is no object (or file) at ``uri``.
        BucketNotFoundError: If the bucket does not exist.
        ValueError: If ``local`` is a URI or ``uri`` is malformed.
        StorageError: On other storage failures.
    """
    src, dst = os.fspath(uri), os.fspath(local)
    if is_remote(dst):
        raise ValueError(f"download_file destination must be a local path, got {dst!r}")
    if is_remote(src):
        _store(settings).get_file(src, dst)
    else:
        if not os.path.isfile(src):
            raise ObjectNotFoundError(src)
        atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
    return Path(dst)


def copy_file(src: PathOrUri, dst: PathOrUri, *, settings: S3Settings | None = None) -> None:
    """Copy one file between any two locations (local or remote on either side).

    Args:
        src: Source path or URI.
        dst: Destination path or URI.
        settings: S3 settings; read from the environment when omitted.

    Raises:
        ObjectNotFoundError: If ``src`` does not exist.
        StorageError: On storage failures.
    """
    s, d = os.fspath(src), os.fspath(dst)
    if not is_remote(s):
        upload_file(s, d, settings=settings)
    elif not is_remote(d):
        download_file(s, d, settings=settings)
    else:
        with tempfile.TemporaryDirectory(prefix="ppminilm-copy-") as tmp:
            local = download_file(s, Path(tmp, "object"), settings=settings)
            upload_file(local, d, settings=settings)


def exists(uri: PathOrUri, *, settings: S3Settings | None = None) -> bool:
    """Tell whether an object (or local file or directory) exists at ``uri``.

    Args:
        uri: Path or URI.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        True if it exists.

    Raises:
        BucketNotFoundError: If the bucket itself does not exist.
        StorageError: On other storage failures.
    """
    target = os.fspath(uri)
    if not is_remote(target):
        return os.path.exists(target)
    return _store(settings).object_exists(target)


def list_uris(prefix: PathOrUri, *, settings: S3Settings | None = None) -> list[str]:
    """List every object under a prefix, recursively, sorted.

    Publish machinery (staging objects of a publish in progress, its ``_PUBLISHING`` marker,
    legacy ``.tmp-<uuid>`` objects) is never listed.

    Args:
        prefix: URI prefix (raw key prefix: ``s3://b/run1`` also matches ``run1-old/``; end it
            with ``/`` for a directory), or a local directory or file.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        Full URIs (or local paths) of the objects; empty if there are none.

    Raises:
        BucketNotFoundError: If the bucket does not exist.
        StorageError: On other storage failures.
    """
    target = os.fspath(prefix)
    if is_remote(target):
        return [u for u in _store(settings).list(target) if not is_internal(parse_uri(u)[1])]
    if os.path.isfile(target):
        return [target]
    return sorted(str(p) for p in Path(target).rglob("*") if p.is_file())


def read_text(
    uri: PathOrUri, *, encoding: str = "utf-8", settings: S3Settings | None = None
) -> str:
    """Read a text object or file.

    Args:
        uri: Path or URI.
        encoding: Text encoding.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The decoded text.

    Raises:
        ObjectNotFoundError: If nothing exists at ``uri``.
        StorageError: On other storage failures.
    """
    target = os.fspath(uri)
    if is_remote(target):
        data = _store(settings).get_bytes(target)
    else:
        if not os.path.isfile(target):
            raise ObjectNotFoundError(target)
        data = Path(target).read_bytes()
    if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
        return decode_text(data, target)
    return data.decode(encoding)


def write_text(
    uri: PathOrUri, text: str, *, encoding: str = "utf-8", settings: S3Settings | None = None
) -> None:
    """Write a text object or file atomically.

    Args:
        uri: Path or URI.
        text: Content.
        encoding: Text encoding.
        settings: S3 settings; read from the environment when omitted.

    Raises:
        StorageError: On storage failures.
    """
    target, data = os.fspath(uri), text.encode(encoding)
    if is_remote(target):
        _store(settings).put_bytes(data, target)
    else:
        atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


def read_json(uri: PathOrUri, *, settings: S3Settings | None = None) -> Any:
    """Read and parse a JSON object or file.

    Args:
        uri: Path or URI.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The parsed value.

    Raises:
        ObjectNotFoundError: If nothing exists at ``uri``.
        ValueError: If the content is not JSON (the message names the URI and position).
        StorageError: On other storage failures.
    """
    target = os.fspath(uri)
    return loads_json(read_text(target, settings=settings), target)


def write_json(uri: PathOrUri, value: Any, *, settings: S3Settings | None = None) -> None:
    """Write a value as JSON (UTF-8, keys in insertion order) atomically.

    Args:
        uri: Path or URI.
        value: JSON-serialisable value.
        settings: S3 settings; read from the environment when omitted.

    Raises:
        TypeError: If ``value`` is not JSON-serialisable.
        StorageError: On storage failures.
    """
    write_text(uri, dumps_json(value), settings=settings)


# --------------------------------------------------------------------------- directories


def put_bytes_if(
    uri: str,
    data: bytes,
    *,
    if_none_match: bool = False,
    if_match: str | None = None,
    settings: S3Settings | None = None,
) -> str:
    """Write a small object only if absent, or only if unchanged since it was read.

    Args:
        uri: Object URI.
        data: Content.
        if_none_match: Create only if nothing exists at ``uri`` (S3 ``If-None-Match: *``).
        if_match: Replace only if the object's ETag is still this one.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The new object's ETag.

    Raises:
        WriteConflictError: If the condition does not hold.
    """
    return _store(settings).put_bytes_if(data, uri, if_none_match=if_none_match, if_match=if_match)


def read_bytes_and_etag(uri: str, *, settings: S3Settings | None = None) -> tuple[bytes, str]:
    """An object's content and ETag (for a later :func:`put_bytes_if` ``if_match``).

    Raises:
        ObjectNotFoundError: If there is no object at ``uri``.
    """
    return _store(settings).get_bytes_and_etag(uri)


def remove_if(uri: str, etag: str, *, settings: S3Settings | None = None) -> None:
    """Delete an object only if its ETag is still ``etag`` (see :mod:`ppminilm.compat.minio`)."""
    _store(settings).remove_if(uri, etag)


def remove_tree(prefix: PathOrUri, *, settings: S3Settings | None = None) -> int:
    """Delete a directory artifact: its ``_SUCCESS`` first (it stops reading as one), then
    every object under ``prefix/`` (or the local directory).

    Returns:
        How many objects (or files) were removed.
    """
    target = os.fspath(prefix).rstrip("/")
    if not is_remote(target):
        path = Path(target)
        count = sum(1 for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
        shutil.rmtree(path, ignore_errors=True)
        return count
    store = _store(settings)
    store.abort_uploads(target + "/")
    uris = store.list(target + "/")
    marker = f"{target}/{SUCCESS_MARKER}"
    ordered = ([marker] if marker in uris else []) + [u for u in uris if u != marker]
    for uri in ordered:
        store.remove(uri)
    return len(ordered)


def abort_uploads(prefix: PathOrUri, *, settings: S3Settings | None = None) -> int:
    """Abort every unfinished multipart upload under an object-store prefix.

    For a writer that owns the prefix (a checkpoint directory under its lease): uploads that
    a killed process started stay billed and invisible until aborted.

    Returns:
        How many uploads were aborted (0 for a local path).
    """
    target = os.fspath(prefix)
    if not is_remote(target):
        return 0
    return _store(settings).abort_uploads(target)


def local_copy(uri: PathOrUri, dest: PathOrUri, *, settings: S3Settings | None = None) -> Path:
    """A local path holding ``uri``'s content: the path itself, or a download into ``dest``.

    Args:
        uri: Local file/directory or an ``s3://``/``minio://`` URI (file or published prefix).
        dest: Where a remote object or prefix is downloaded to.

    Returns:
        The local path to read.
    """
    if not is_remote(str(uri)):
        return Path(uri)
    target = Path(dest)
    if exists(uri, settings=settings):
        return download_file(uri, target, settings=settings)
    download_dir(uri, target, settings=settings)
    return target
