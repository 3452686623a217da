"""Publishing a directory under an object-store prefix without ever losing the last good one.

S3 writes one object atomically but nothing spans two objects, so the manifest
(:data:`~ppminilm.storage.layout.SUCCESS_MARKER`) is the switch: readers go through it, and a
publish changes it only when everything it points to is complete.

* **A prefix with a published version** (a readable ``_SUCCESS``): the new files go to
  ``.ppminilm-staging/<version>/``; then ``_SUCCESS`` is replaced by one pointing there (the
  switch: the new version is visible, whole); then the files are copied server-side to their
  own keys, ``_SUCCESS`` is rewritten to point at those, and the staging objects, the old
  version's files that the new one lacks and the in-progress marker are removed. Killed at any
  point, the prefix reads as the old version or the new one.
* **A new prefix** (or one a killed publish of ours left, ``_PUBLISHING`` and no manifest):
  nothing to keep, so the files go straight to their keys under the in-progress marker, then
  ``_SUCCESS``. Killed, the prefix reads as an unfinished publish (refused), never as data.
* **A prefix holding someone else's objects** (no manifest, no marker): refused, so a
  mistyped destination cannot overwrite a user's upload.

Every publish first cleans what killed publishes left under its prefix: it aborts unfinished
multipart uploads (SIGKILL gives the client no chance to) and removes staging objects of
versions the manifest does not point at, and legacy ``<key>.tmp-<uuid>`` objects. The rest
(prefixes never published again) is for the bucket lifecycle rule in ``manifests/README.md``.
One publisher per prefix at a time is assumed (checkpoint directories hold a lease).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppminilm.errors import UserError
from ppminilm.io import deferred_signals, dumps_json, loads_json
from ppminilm.storage.errors import IncompleteArtifactError, ObjectNotFoundError
from ppminilm.storage.layout import (
    MANIFEST_FORMAT,
    MANIFEST_FORMATS,
    PUBLISHING_MARKER,
    STAGING_DIR,
    SUCCESS_MARKER,
    is_data,
    is_internal,
)
from ppminilm.storage.s3 import S3Store, file_sha256

logger = logging.getLogger("ppminilm.storage")

#: ``(relative POSIX path, local file)`` of one file to publish.
LocalFile = tuple[str, Path]


def manifest_entries(files: Sequence[LocalFile]) -> list[dict[str, Any]]:
    """Manifest entries (path, size, sha256) of local files."""
    return [{"path": rel, "size": p.stat().st_size, "sha256": file_sha256(p)} for rel, p in files]


def make_manifest(
    entries: list[dict[str, Any]], kind: str, version: str, superseded: Sequence[str] = ()
) -> dict[str, Any]:
    """The ``_SUCCESS`` document.

    Args:
        entries: ``path``, ``size``, ``sha256`` (and ``key`` while staged) of every file.
        kind: What the artifact is.
        version: Id of this publish.
        superseded: Files of earlier versions that this one lacks (removed after the switch).
    """
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "kind": kind,
        "version": version,
        "files": entries,
        "total_bytes": sum(int(e["size"]) for e in entries),
    }
    if superseded:
        manifest["superseded"] = list(superseded)
    return manifest


def parse_manifest(text: str, where: str) -> dict[str, Any]:
    """Parse and check a manifest; damage raises :class:`IncompleteArtifactError`."""
    try:
        manifest = loads_json(text, where)
    except ValueError as exc:
        raise IncompleteArtifactError(f"unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise IncompleteArtifactError(f"{where}: expected a JSON object with a 'files' list")
    fmt = manifest.get("format", MANIFEST_FORMATS[0])
    if fmt not in MANIFEST_FORMATS:
        raise IncompleteArtifactError(
            f"{where}: manifest format {fmt!r}; expected {MANIFEST_FORMATS}"
        )
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise IncompleteArtifactError(f"{where}: every 'files' entry needs a 'path' string")
    return manifest


def read_remote_manifest(store: S3Store, base: str) -> dict[str, Any] | None:
    """The manifest of the prefix ``base`` (no trailing ``/``), or None if it has none."""
    uri = f"{base}/{SUCCESS_MARKER}"
    try:
        text = store.get_bytes(uri).decode("utf-8", errors="replace")
    except ObjectNotFoundError:
        return None
    return parse_manifest(text, uri)


def _relative(base: str, uris: Sequence[tuple[str, int]]) -> dict[str, int]:
    head = base + "/"
    return {u[len(head) :]: size for u, size in uris if u.startswith(head)}


def clean_prefix(store: S3Store, base: str, keep_version: str | None = None) -> None:
    """Abort unfinished uploads and remove leftovers of killed publishes under ``base/``.

    Args:
        store: The S3 store.
        base: The artifact prefix URI, without a trailing ``/``.
        keep_version: Staging version the current manifest points at (kept).
    """
    store.abort_uploads(base + "/")
    stale = []
    for rel in _relative(base, store.list_sizes(base + "/")):
        parts = rel.split("/")
        if is_internal(rel) and rel != PUBLISHING_MARKER:
            if parts[0] == STAGING_DIR and len(parts) > 2 and parts[1] == keep_version:
                continue
            stale.append(rel)
    for rel in stale:
        store.remove(f"{base}/{rel}")
    if stale:
        logger.info(
            "removed %d leftover object(s) of unfinished publishes under %s", len(stale), base
        )


def _marker(version: str) -> bytes:
    record = {
        "version": version,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    return dumps_json(record).encode("utf-8")


def _write_manifest(store: S3Store, base: str, manifest: dict[str, Any]) -> None:
    with deferred_signals():  # the switch: one PUT, not split by SIGTERM
        store.put_bytes(dumps_json(manifest).encode("utf-8"), f"{base}/{SUCCESS_MARKER}")


def publish_prefix(
    store: S3Store, files: Sequence[LocalFile], prefix_uri: str, *, kind: str = ""
) -> dict[str, Any]:
    """Publish local files under ``prefix_uri`` (see the module docstring for the protocol).

    Args:
        store: The S3 store.
        files: ``(relative path, local file)`` pairs, data files only.
        prefix_uri: Destination prefix URI.
        kind: What the artifact is (recorded in the manifest; ``model``, ``task``...).

    Returns:
        The manifest now at ``<prefix>/_SUCCESS``.

    Raises:
        UserError: If the prefix holds objects no ppminilm publish wrote.
        StorageError: On storage failures (the previous version stays readable).
    """
    base = prefix_uri.rstrip("/")
    present = _relative(base, store.list_sizes(base + "/"))
    data = sorted(rel for rel in present if is_data(rel))
    try:
        old = read_remote_manifest(store, base) if SUCCESS_MARKER in present else None
    except IncompleteArtifactError as exc:
        logger.warning("%s: replacing a damaged manifest (%s)", base, exc)
        old = None
    ours = SUCCESS_MARKER in present or PUBLISHING_MARKER in present
    if data and not ours:
        raise UserError(
            f"{base}: holds {len(data)} object(s) that ppminilm did not publish (e.g. "
            f"{base}/{data[0]}); refusing to publish over them: choose another prefix or "
            "delete them first"
        )
    version = uuid.uuid4().hex
    staged_now = old is not None and any(e.get("key") for e in old["files"])
    current = old.get("version") if old and staged_now else None
    clean_prefix(store, base, keep_version=current if isinstance(current, str) else None)
    entries = manifest_entries(files)
    keep = {e["path"] for e in entries}
    # Files of the versions before this one that it lacks: listed in the manifests, so a publish
    # killed before its cleanup leaves nothing the next one does not know to remove.
    superseded = sorted(
        rel
        for rel in {str(e["path"]) for e in (old or {}).get("files", [])}
        | set((old or {}).get("superseded", []))
        if rel not in keep and is_data(rel)
    )
    final = make_manifest(entries, kind, version)
    staging = f"{STAGING_DIR}/{version}" if old is not None else ""
    written: list[str] = []
    switched = False
    store.put_bytes(_marker(version), f"{base}/{PUBLISHING_MARKER}")
    try:
        for rel, path in files:
            key = f"{staging}/{rel}" if staging else rel
            written.append(key)
            store.put_file(str(path), f"{base}/{key}")
        if not staging:
            # Still an unfinished publish: files a killed earlier attempt left can go now.
            _remove(store, base, [rel for rel in data if rel not in keep])
            _write_manifest(store, base, final)
            switched = True
        else:
            pointed = [{**e, "key": f"{staging}/{e['path']}"} for e in entries]
            _write_manifest(store, base, make_manifest(pointed, kind, version, superseded))
            switched = True
            for entry in entries:
                store.copy(
                    f"{base}/{staging}/{entry['path']}", f"{base}/{entry['path']}", entry["size"]
                )
            _remove(store, base, superseded)
            _write_manifest(store, base, final)
    except BaseException:
        # The previous state stays unless the switch happened (or may have: a failure right
        # after its PUT): then the new version is what readers see, keep it.
        if not switched and not _switched_to(store, base, version):
            # Keep the marker over files an earlier killed publish left: they are not data.
            marker = [PUBLISHING_MARKER] if staging or not data else []
            _discard(store, base, [*written, *marker])
        raise
    leftovers = [f"{staging}/{e['path']}" for e in entries] if staging else []
    # A version a killed publish had switched to but not yet copied out of staging.
    leftovers += [
        str(e["key"])
        for e in (old or {}).get("files", [])
        if e.get("key") and is_internal(str(e["key"]))
    ]
    _remove(store, base, [*leftovers, PUBLISHING_MARKER])
    logger.info("published %d files (%d bytes) to %s", len(entries), final["total_bytes"], base)
    return final


def _switched_to(store: S3Store, base: str, version: str) -> bool:
    """Whether the manifest at ``base`` is this publish's (True when it cannot be read)."""
    try:
        manifest = read_remote_manifest(store, base)
    except Exception:
        return True
    return manifest is not None and manifest.get("version") == version


def _remove(store: S3Store, base: str, rels: Sequence[str]) -> None:
    for rel in rels:
        store.remove(f"{base}/{rel}")


def _discard(store: S3Store, base: str, rels: Sequence[str]) -> None:
    """Best effort: remove what a failed publish wrote (never hides the failure)."""
    try:
        _remove(store, base, rels)
    except Exception as exc:
        logger.warning("could not remove the objects of a failed publish under %s: %s", base, exc)


def prefix_state(store: S3Store, base: str) -> tuple[str, dict[str, Any] | None, list[str]]:
    """What a reader finds under a prefix.

    Returns:
        ``(state, manifest, data)``: ``state`` is ``published`` (a manifest), ``publishing``
        (our in-progress marker, no manifest), ``uploaded`` (objects only: a user's upload)
        or ``missing``; ``data`` lists the data files' relative paths.

    Raises:
        IncompleteArtifactError: If the manifest is damaged.
    """
    present = _relative(base, store.list_sizes(base + "/"))
    data = sorted(rel for rel in present if is_data(rel))
    if SUCCESS_MARKER in present:
        manifest = read_remote_manifest(store, base)
        if manifest is not None:
            return "published", manifest, data
    if PUBLISHING_MARKER in present:
        return "publishing", None, data
    return ("uploaded" if data else "missing"), None, data
