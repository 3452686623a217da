"""Read and write artifacts on local paths and ``s3://`` / ``minio://`` URIs.

Every function takes either a local path or a URI ``s3://bucket/key`` (``minio://`` is a
synonym), so callers never branch on where an artifact lives. Remote access goes through the
``minio`` client, configured from the environment only (:class:`S3Settings`).

Publishing is atomic: an object is written to ``<key>.tmp-<uuid>``, copied server-side to its
key, and the temporary object deleted, so the final key is either the old object or the new
one. A directory is published file by file, then a ``_SUCCESS`` manifest (relative path, size
and sha256 of every file) is written last; :func:`download_dir` refuses a prefix without it.
Local writes go to a temporary file in the destination directory, then ``os.replace``.

Transient failures (connection errors, HTTP 5xx, ``SlowDown``) are retried with exponential
backoff; credential errors and missing buckets are not. Failures raise the
:class:`~ppminilm.storage.errors.StorageError` subclasses re-exported here.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ppminilm.io import atomic_write, dumps_json, is_remote, loads_json
from ppminilm.storage.errors import (
    BucketNotFoundError,
    IncompleteArtifactError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageConfigError,
    StorageError,
    StorageUnreachableError,
)
from ppminilm.storage.s3 import S3Settings, S3Store, file_sha256, parse_uri

__all__ = [
    "SUCCESS_MARKER",
    "BucketNotFoundError",
    "IncompleteArtifactError",
    "ObjectNotFoundError",
    "S3Settings",
    "StorageAuthError",
    "StorageConfigError",
    "StorageError",
    "StorageUnreachableError",
    "copy_file",
    "copy_tree",
    "download_dir",
    "download_file",
    "exists",
    "is_remote",
    "list_uris",
    "parse_uri",
    "read_json",
    "read_text",
    "upload_dir",
    "upload_file",
    "write_json",
    "write_text",
]

logger = logging.getLogger(__name__)

#: Name of the manifest written last into a published directory.
SUCCESS_MARKER = "_SUCCESS"
#: Value of the manifest's ``format`` field.
MANIFEST_FORMAT = "ppminilm-artifact/1"

PathOrUri = str | os.PathLike[str]


def _store(settings: S3Settings | None) -> S3Store:
    return S3Store(settings or S3Settings.from_env())


def _join(prefix: str, rel: str) -> str:
    """Join a directory URI or path and a relative POSIX path."""
    if is_remote(prefix):
        return prefix.rstrip("/") + "/" + rel
    return str(Path(prefix, *rel.split("/")))


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
    _store(settings).put_file(src, dst)


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
        return _store(settings).list(target)
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
        return _store(settings).get_bytes(target).decode(encoding)
    try:
        return Path(target).read_text(encoding=encoding)
    except FileNotFoundError:
        raise ObjectNotFoundError(target) from None


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


def _local_files(local_dir: Path) -> Iterator[tuple[str, Path]]:
    """Yield ``(relative POSIX path, path)`` of the files under ``local_dir``, sorted."""
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        if rel != SUCCESS_MARKER:
            yield rel, path


def upload_dir(
    local_dir: PathOrUri, uri_prefix: PathOrUri, *, settings: S3Settings | None = None
) -> dict[str, Any]:
    """Publish a local directory under a prefix: every file, then the ``_SUCCESS`` manifest.

    A previous ``_SUCCESS`` at the destination is removed first, so the prefix reads as
    incomplete while it is being rewritten and a failed upload never looks complete.

    Args:
        local_dir: Existing local directory.
        uri_prefix: Destination directory URI or local directory.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The manifest written to ``_SUCCESS``.

    Raises:
        ObjectNotFoundError: If ``local_dir`` is not a directory.
        StorageError: On storage failures (nothing marks the prefix complete then).
    """
    src, dst = Path(os.fspath(local_dir)), os.fspath(uri_prefix)
    if is_remote(os.fspath(local_dir)):
        raise ValueError(f"upload_dir source must be a local directory, got {src!s}")
    if not src.is_dir():
        raise ObjectNotFoundError(str(src))
    store = _store(settings) if is_remote(dst) else None
    marker = _join(dst, SUCCESS_MARKER)
    if store is not None:
        store.remove(marker)
    else:
        Path(marker).unlink(missing_ok=True)
    entries: list[dict[str, Any]] = []
    for rel, path in _local_files(src):
        entries.append({"path": rel, "size": path.stat().st_size, "sha256": file_sha256(path)})
        upload_file(path, _join(dst, rel), settings=store.settings if store else None)
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": entries,
        "total_bytes": sum(e["size"] for e in entries),
    }
    write_json(marker, manifest, settings=store.settings if store else None)
    logger.info("published %d files (%d bytes) to %s", len(entries), manifest["total_bytes"], dst)
    return manifest


def _checked_rel(rel: str, where: str) -> str:
    """Refuse manifest/listing paths that would escape the destination directory."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise IncompleteArtifactError(f"{where}: unsafe file path {rel!r} in artifact")
    return rel


def _read_manifest(prefix: str, settings: S3Settings | None) -> dict[str, Any] | None:
    marker = _join(prefix, SUCCESS_MARKER)
    try:
        manifest = read_json(marker, settings=settings)
    except ObjectNotFoundError:
        return None
    except ValueError as exc:
        raise IncompleteArtifactError(f"{marker}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise IncompleteArtifactError(f"{marker}: expected a JSON object with a 'files' list")
    return manifest


def download_dir(
    uri_prefix: PathOrUri,
    local_dir: PathOrUri,
    *,
    require_complete: bool = True,
    settings: S3Settings | None = None,
) -> list[Path]:
    """Fetch a published directory into ``local_dir`` and verify it against its manifest.

    Args:
        uri_prefix: Source directory URI (or local directory).
        local_dir: Destination local directory (created; existing files are overwritten).
        require_complete: Refuse a prefix without ``_SUCCESS``. With False and no manifest,
            every object under the prefix is fetched unverified.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The local files written (the manifest included), sorted.

    Raises:
        IncompleteArtifactError: If ``_SUCCESS`` is missing (and required), or a file is
            missing or differs from the manifest's size/sha256.
        BucketNotFoundError: If the bucket does not exist.
        StorageError: On other storage failures.
    """
    src, dst = os.fspath(uri_prefix).rstrip("/") or os.fspath(uri_prefix), Path(local_dir)
    if is_remote(os.fspath(local_dir)):
        raise ValueError(f"download_dir destination must be a local directory, got {dst!s}")
    settings = settings or (S3Settings.from_env() if is_remote(src) else None)
    manifest = _read_manifest(src, settings)
    if manifest is None:
        if require_complete:
            raise IncompleteArtifactError(
                f"incomplete artifact: {src} has no {SUCCESS_MARKER} manifest (its upload "
                "failed or is still running); re-publish it, or pass require_complete=False"
            )
        base = src.rstrip("/") + "/" if is_remote(src) else src
        rels = [
            _checked_rel(u[len(base) :].lstrip("/"), src)
            for u in list_uris(base, settings=settings)
        ]
        rels = [r for r in rels if ".tmp-" not in r.rsplit("/", 1)[-1]]
        logger.warning("%s has no %s; fetching %d files unverified", src, SUCCESS_MARKER, len(rels))
        expected: dict[str, dict[str, Any]] = {r: {} for r in rels}
    else:
        expected = {_checked_rel(str(e["path"]), src): e for e in manifest["files"]}
    written = []
    for rel, entry in expected.items():
        local = dst.joinpath(*rel.split("/"))
        try:
            download_file(_join(src, rel), local, settings=settings)
        except ObjectNotFoundError:
            raise IncompleteArtifactError(
                f"incomplete artifact: {src} lists {rel} in its manifest but it is missing"
            ) from None
        if entry and (
            local.stat().st_size != entry.get("size") or file_sha256(local) != entry.get("sha256")
        ):
            raise IncompleteArtifactError(
                f"{_join(src, rel)} does not match the size/sha256 in {SUCCESS_MARKER}"
            )
        written.append(local)
    if manifest is not None:
        write_json(dst / SUCCESS_MARKER, manifest)
        written.append(dst / SUCCESS_MARKER)
    logger.info("fetched %d files from %s to %s", len(expected), src, dst)
    return sorted(written)


def copy_tree(
    src: PathOrUri,
    dst: PathOrUri,
    *,
    require_complete: bool = True,
    settings: S3Settings | None = None,
) -> None:
    """Copy a directory artifact: local->local, local->remote, remote->local, remote->remote.

    The destination always ends with a ``_SUCCESS`` manifest written last.

    Args:
        src: Source directory (local) or directory URI (must be complete unless
            ``require_complete`` is False).
        dst: Destination directory or directory URI.
        require_complete: Passed to :func:`download_dir` for a remote source.
        settings: S3 settings; read from the environment when omitted.

    Raises:
        IncompleteArtifactError: If a remote source is incomplete.
        StorageError: On storage failures.
    """
    s, d = os.fspath(src), os.fspath(dst)
    if not is_remote(s):
        upload_dir(s, d, settings=settings)
    elif not is_remote(d):
        download_dir(s, d, require_complete=require_complete, settings=settings)
    else:
        with tempfile.TemporaryDirectory(prefix="ppminilm-copy-") as tmp:
            download_dir(s, tmp, require_complete=require_complete, settings=settings)
            upload_dir(tmp, d, settings=settings)


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
