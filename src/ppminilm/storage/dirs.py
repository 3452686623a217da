"""Directory artifacts: publish, fetch and copy them between local paths and prefixes.

Remote publishing follows :mod:`ppminilm.storage.publish` (the previous version stays readable
until the new one is complete); a local destination is written through
:func:`ppminilm.io.staged_dir` (all or nothing, never merged into someone's directory). What a
reader accepts is described in :mod:`ppminilm.storage.layout`: a published prefix is read
through its manifest and verified; a prefix a user uploaded with ``aws s3 cp`` / ``mc cp``
(objects, no manifest) is read as it is; an unfinished publish of ours is refused.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ppminilm.io import (
    STAGED_MARKER,
    is_remote,
    read_text_file,
    staged_dir,
    staged_kind,
    write_json,
)
from ppminilm.storage.errors import IncompleteArtifactError, ObjectNotFoundError, StorageError
from ppminilm.storage.layout import PUBLISHING_MARKER, SUCCESS_MARKER, is_data
from ppminilm.storage.publish import (
    make_manifest,
    manifest_entries,
    parse_manifest,
    prefix_state,
    publish_prefix,
)
from ppminilm.storage.s3 import S3Settings, S3Store, file_sha256

logger = logging.getLogger("ppminilm.storage")

PathOrUri = str | os.PathLike[str]
#: Times a download restarts when the manifest changed under it (a concurrent publish).
_DOWNLOAD_ATTEMPTS = 3


def _store(settings: S3Settings | None) -> S3Store:
    return S3Store(settings or S3Settings.from_env())


def local_files(local_dir: Path) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of the data files under ``local_dir``, sorted.

    The manifest, the staged-directory marker and publish machinery names are left out.
    """
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(local_dir).as_posix()
        if rel != STAGED_MARKER and is_data(rel):
            yield rel, path


def upload_dir(
    local_dir: PathOrUri, uri_prefix: PathOrUri, *, settings: S3Settings | None = None
) -> dict[str, Any]:
    """Publish a local directory under a prefix (or into a local directory), all or nothing.

    Remote: the previous version at the prefix stays readable until the new one is complete
    (:mod:`ppminilm.storage.publish`). Local: the destination is replaced through
    :func:`ppminilm.io.staged_dir`. Either way it ends with a ``_SUCCESS`` manifest.

    Args:
        local_dir: Existing local directory.
        uri_prefix: Destination directory URI or local directory.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The manifest written to ``_SUCCESS``.

    Raises:
        ObjectNotFoundError: If ``local_dir`` is not a directory.
        UserError: If the destination holds files or objects ppminilm did not write.
        StorageError: On storage failures (the destination keeps its previous version).
    """
    src, dst = Path(os.fspath(local_dir)), os.fspath(uri_prefix)
    if is_remote(os.fspath(local_dir)):
        raise ValueError(f"upload_dir source must be a local directory, got {src!s}")
    if not src.is_dir():
        raise ObjectNotFoundError(str(src))
    files = list(local_files(src))
    kind = staged_kind(src) or ""
    if is_remote(dst):
        return publish_prefix(_store(settings), files, dst, kind=kind)
    manifest = make_manifest(manifest_entries(files), kind, "")
    with staged_dir(dst, replace=True, kind=kind) as tmp:
        for rel, path in files:
            target = tmp.joinpath(*rel.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        write_json(tmp / SUCCESS_MARKER, manifest)
    logger.info("copied %d files (%d bytes) to %s", len(files), manifest["total_bytes"], dst)
    return manifest


def _checked_rel(rel: str, where: str) -> str:
    """Refuse manifest/listing paths that would escape the destination directory."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise IncompleteArtifactError(f"{where}: unsafe file path {rel!r} in artifact")
    return rel


def _local_state(src: Path) -> tuple[str, dict[str, Any] | None, list[str]]:
    if not src.is_dir():
        return "missing", None, []
    data = [rel for rel, _ in local_files(src)]
    marker = src / SUCCESS_MARKER
    if marker.is_file():
        return (
            "published",
            parse_manifest(read_text_file(marker, IncompleteArtifactError), str(marker)),
            data,
        )
    if (src / PUBLISHING_MARKER).is_file():
        return "publishing", None, data
    return ("uploaded" if data else "missing"), None, data


class _MovedError(Exception):
    """An object vanished or changed while its manifest changed too (a concurrent publish)."""


def download_dir(
    uri_prefix: PathOrUri,
    local_dir: PathOrUri,
    *,
    require_complete: bool = True,
    settings: S3Settings | None = None,
) -> list[Path]:
    """Fetch a directory artifact into ``local_dir`` (all or nothing) and verify it.

    A published prefix is read through its manifest, every file checked against its size and
    sha256; a prefix holding only objects (a user's ``aws s3 cp --recursive`` upload) is
    fetched as it is; an unfinished publish of ours is refused.

    Args:
        uri_prefix: Source directory URI (or local directory).
        local_dir: Destination local directory, replaced whole (it must be empty, missing or
            an earlier download).
        require_complete: Refuse an unfinished publish. With False its files are fetched
            unverified.
        settings: S3 settings; read from the environment when omitted.

    Returns:
        The local files written (the manifest included), sorted.

    Raises:
        ObjectNotFoundError: If there is nothing at all under the prefix.
        IncompleteArtifactError: If the publish is unfinished, or a file is missing or
            differs from the manifest.
        UserError: If ``local_dir`` holds files ppminilm did not write.
        StorageError: On other storage failures.
    """
    src = os.fspath(uri_prefix).rstrip("/") or os.fspath(uri_prefix)
    dst = Path(local_dir)
    if is_remote(os.fspath(local_dir)):
        raise ValueError(f"download_dir destination must be a local directory, got {dst!s}")
    remote = is_remote(src)
    store = _store(settings) if remote else None
    for _attempt in range(_DOWNLOAD_ATTEMPTS):
        state, manifest, data = prefix_state(store, src) if store else _local_state(Path(src))
        if state == "missing":
            raise ObjectNotFoundError(src, f" (nor a directory artifact under {src}/)")
        if state == "publishing" and require_complete:
            raise IncompleteArtifactError(
                f"incomplete artifact: {src} is an unfinished publish ({PUBLISHING_MARKER} and "
                f"no {SUCCESS_MARKER}: the upload failed or is still running); re-publish it"
            )
        if manifest is None:
            logger.info(
                "%s has no %s manifest: reading its %d file(s) as uploaded (unverified)",
                src,
                SUCCESS_MARKER,
                len(data),
            )
            entries: dict[str, dict[str, Any]] = {_checked_rel(r, src): {} for r in data}
        else:
            entries = {_checked_rel(str(e["path"]), src): e for e in manifest["files"]}
        try:
            return _fetch(src, store, entries, manifest, dst)
        except _MovedError:
            logger.info("%s changed while it was read (a publish finished); reading again", src)
    raise IncompleteArtifactError(f"{src} kept changing while it was read; try again later")


def _fetch(
    src: str,
    store: S3Store | None,
    entries: dict[str, dict[str, Any]],
    manifest: dict[str, Any] | None,
    dst: Path,
) -> list[Path]:
    kind = str(manifest.get("kind", "")) if manifest else ""
    written: list[Path] = []
    with staged_dir(dst, replace=True, kind=kind) as tmp:
        for rel, entry in entries.items():
            local = tmp.joinpath(*rel.split("/"))
            source = f"{src}/{entry.get('key') or rel}"
            try:
                if store is not None:
                    store.get_file(source, str(local))
                else:
                    local.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(Path(src, *str(entry.get("key") or rel).split("/")), local)
            except (ObjectNotFoundError, FileNotFoundError):
                _raise_unless_moved(src, store, manifest, f"{src} lists {rel} but it is missing")
            if entry and (
                local.stat().st_size != entry.get("size")
                or file_sha256(local) != entry.get("sha256")
            ):
                _raise_unless_moved(
                    src,
                    store,
                    manifest,
                    f"{src}/{rel} does not match the size/sha256 in {SUCCESS_MARKER}",
                )
            written.append(dst.joinpath(*rel.split("/")))
        if manifest is not None:
            plain = {
                **manifest,
                "files": [{k: v for k, v in e.items() if k != "key"} for e in manifest["files"]],
            }
            write_json(tmp / SUCCESS_MARKER, plain)
            written.append(dst / SUCCESS_MARKER)
    logger.info("fetched %d files from %s to %s", len(entries), src, dst)
    return sorted(written)


def _raise_unless_moved(
    src: str, store: S3Store | None, manifest: dict[str, Any] | None, message: str
) -> None:
    if manifest is not None:
        try:
            _state, now, _ = prefix_state(store, src) if store else _local_state(Path(src))
        except StorageError:
            now = None
        if now is not None and now != manifest:
            raise _MovedError()
    raise IncompleteArtifactError(f"incomplete artifact: {message}")


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
        src: Source directory (local) or directory URI (an unfinished publish is refused
            unless ``require_complete`` is False).
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
            download_dir(s, Path(tmp, "tree"), require_complete=require_complete, settings=settings)
            upload_dir(Path(tmp, "tree"), d, settings=settings)
