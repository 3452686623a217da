"""The one local I/O layer: staged directories, atomic files, one JSON style, one JSON reader.

Crash-safety rules live here and only here:

* :func:`atomic_write` writes a file through a temporary file in the same directory and
  ``os.replace``; a crash leaves the old content or the complete new one, never a mix.
* :func:`staged_dir` builds a directory beside its target and swaps it in when complete.
  A target that holds something else is never merged into: it is refused, or (``replace``)
  swapped out whole, and a target holding files that no ppminilm stage wrote is refused even
  then, so a mistyped ``--out`` cannot delete a user's files.
* :func:`dumps_json` is the one JSON style (UTF-8 text, 2-space indent, trailing newline);
  :func:`read_json_file` the one reader, whose errors name ``file:line:column``.

:func:`is_remote` tells object-store URIs from local paths for every module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ppminilm.errors import UserError

#: URI schemes served through the S3 client (``minio://`` is a synonym of ``s3://``).
REMOTE_SCHEMES = ("s3", "minio")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: Hidden file a staged directory carries: what wrote it (so ``replace`` knows it is ours).
STAGED_MARKER = ".ppminilm-artifact"

PathLike = str | os.PathLike[str]


def is_remote(uri: PathLike) -> bool:
    """Tell whether ``uri`` names an object store location.

    Args:
        uri: ``s3://bucket/key``, ``minio://bucket/key`` or a local path.

    Returns:
        True for ``s3://`` and ``minio://`` URIs, False for local paths.

    Raises:
        UserError: If ``uri`` has another scheme (``gs://``, ``http://``...).
    """
    text = os.fspath(uri)
    match = _SCHEME_RE.match(text)
    if match is None:
        return False
    if match.group(1).lower() not in REMOTE_SCHEMES:
        raise UserError(f"unsupported URI {text!r}: expected s3://, minio:// or a local path")
    return True


# --------------------------------------------------------------------------- JSON


def dumps_json(value: Any) -> str:
    """The project's JSON style: 2-space indent, UTF-8 characters kept, trailing newline.

    Values JSON cannot hold (paths, numpy scalars) are written as their ``str``.
    """
    return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return value.tolist()
    return str(value)


def loads_json(text: str, where: str, error: type[Exception] = UserError) -> Any:
    """Parse JSON text; a syntax error raises ``error`` naming ``where:line:column``.

    Args:
        text: The JSON text.
        where: File or URI (or ``--overrides``) for the message.
        error: Exception class to raise (a :class:`~ppminilm.errors.UserError` subclass).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def read_text_file(path: PathLike, error: type[Exception] = UserError) -> str:
    """Read a UTF-8 text file; a missing file, a directory or bad bytes raise ``error``.

    Args:
        path: The file.
        error: Exception class to raise, with a message naming the file.
    """
    p = Path(path)
    if p.is_dir():
        raise error(f"{p}: is a directory, expected a file")
    if not p.is_file():
        raise error(f"{p}: no such file")
    data = p.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{p}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


def read_json_file(path: PathLike, error: type[Exception] = UserError) -> Any:
    """Read and parse a JSON file; every failure raises ``error`` naming the file.

    Args:
        path: The file.
        error: Exception class to raise (e.g. ``ModelFormatError``, ``ReportError``).

    Raises:
        error: ``file: no such file``, ``file: is a directory``, ``file:line: not UTF-8``
            or ``file:line:column: invalid JSON: ...``.
    """
    return loads_json(read_text_file(path, error), str(path), error)


# --------------------------------------------------------------------------- atomic files


def atomic_write(path: PathLike, write: Callable[[str], object]) -> Path:
    """Write a local file atomically: ``write(tmp)`` then ``os.replace(tmp, path)``.

    The temporary file lives in the destination directory (same filesystem) and is removed if
    ``write`` fails, so ``path`` holds either its old content or the complete new one.

    Args:
        path: Destination file; parent directories are created.
        write: Called with the temporary file's path; must write the whole content there.

    Returns:
        The destination path.
    """
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target}: is a directory, expected a file path to write")
    _make_parent(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _make_parent(target: Path) -> None:
    for parent in reversed(target.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{target}: cannot write under {parent}, which is a file")
    target.parent.mkdir(parents=True, exist_ok=True)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write bytes to a file atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write UTF-8 text to a file atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, value: Any) -> Path:
    """Write a value as JSON in the project's style (:func:`dumps_json`), atomically."""
    return atomic_write_text(path, dumps_json(value))


def write_json(path: PathLike, value: Any) -> Path:
    """Write a JSON file in the project's style inside a directory being staged.

    Plain write, for files under a :func:`staged_dir` (the directory swap is the atomic step);
    use :func:`atomic_write_json` for a file that readers may see at any time.
    """
    p = Path(path)
    p.write_text(dumps_json(value), encoding="utf-8")
    return p


# --------------------------------------------------------------------------- directories


def is_staged_artifact(path: PathLike) -> bool:
    """Whether a directory was written by :func:`staged_dir` (it carries the marker)."""
    return (Path(path) / STAGED_MARKER).is_file()


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


@contextlib.contextmanager
def staged_dir(out_dir: PathLike, *, replace: bool = False, kind: str = "") -> Iterator[Path]:
    """Write a directory all or nothing: yields an empty temp dir beside ``out_dir``.

    On normal exit the temp dir becomes ``out_dir``; on an exception (or a signal turned into
    one) it is removed and ``out_dir`` is left exactly as it was.

    Args:
        out_dir: Target directory. It may be missing or empty (a KFP output path is).
        replace: Swap out a non-empty ``out_dir`` whole. Without it a non-empty target is
            refused. Even with it, a target holding files that no ppminilm stage wrote (no
            :data:`STAGED_MARKER`) is refused, so user files are never deleted.
        kind: What the directory holds, recorded in the marker (``model``, ``task``...).

    Raises:
        UserError: If ``out_dir`` is a file, or non-empty and not replaceable.
    """
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: is a file, expected a directory to write")
    present = _entries(target)
    if present and not replace:
        raise UserError(
            f"{target}: not empty ({len(present)} entries, e.g. {present[0]!r}); refusing to "
            "merge a new artifact into it: choose an empty or new directory"
        )
    if present and not is_staged_artifact(target):
        raise UserError(
            f"{target}: holds files that ppminilm did not write (e.g. {present[0]!r}); refusing "
            "to replace it: choose an empty or new directory"
        )
    _make_parent(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        (tmp / STAGED_MARKER).write_text(dumps_json({"kind": kind}), encoding="utf-8")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    """Move a finished temp dir to ``target``, replacing what is there (two renames)."""
    if not target.exists():
        os.replace(tmp, target)
        return
    if not _entries(target):
        target.rmdir()
        os.replace(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)  # put the previous version back
        raise
    shutil.rmtree(old, ignore_errors=True)


def copy_dir(src: PathLike, dst: PathLike, *, replace: bool = True, kind: str = "") -> Path:
    """Copy a local directory into ``dst`` through :func:`staged_dir` (all or nothing).

    Raises:
        UserError: If ``src`` is not a directory, or ``dst`` cannot be written (see
            :func:`staged_dir`).
    """
    source = Path(src)
    if not source.is_dir():
        raise UserError(f"{source}: no such directory")
    with staged_dir(dst, replace=replace, kind=kind) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=_ignore_marker)
    return Path(dst)


def _ignore_marker(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n == STAGED_MARKER]
