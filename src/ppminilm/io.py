"""The one local I/O layer: staged directories, atomic files, one JSON style, one JSON reader.

Crash-safety rules live here and only here:

* :func:`atomic_write` writes a file through a temporary file in the same directory and
  ``os.replace``; a crash leaves the old content or the complete new one, never a mix.
* :func:`staged_dir` builds a directory beside its target and swaps it in when complete
  (one atomic ``renameat2(RENAME_EXCHANGE)`` on Linux, so even SIGKILL mid-swap leaves the old
  or the new version). A target that holds something else is never merged into: it is
  refused, or (``replace``) swapped out whole; a target holding files that no ppminilm stage
  wrote, or another kind of artifact (a model where an inference model is being written), is
  refused even then, so a mistyped ``--out`` cannot delete a user's files or results. Temp
  directories that a killed process left beside a target are removed by the next write.
* :func:`deferred_signals` holds SIGTERM/SIGINT back across a few system calls that must not
  be split (the fallback two-rename swap, publishing a manifest).
* :func:`dumps_json` is the one JSON style (UTF-8 text, 2-space indent, trailing newline);
  :func:`read_json_file` the one reader, whose errors name ``file:line:column``.

:func:`is_remote` tells object-store URIs from local paths for every module.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ppminilm.errors import UserError

logger = logging.getLogger(__name__)

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
    return decode_text(p.read_bytes(), str(p), error)


def decode_text(data: bytes, where: str, error: type[Exception] = UserError) -> str:
    """Decode UTF-8 bytes (a BOM is dropped); bad bytes raise ``error`` naming ``where:line``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{where}:{line}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None


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
    remove_stale_siblings(target)
    fd, tmp = tempfile.mkstemp(prefix=_sibling_prefix(target, "tmp"), dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def check_file_target(path: PathLike) -> Path:
    """Check, before any work, that a file can be written at ``path`` later.

    Raises:
        UserError: If ``path`` is a directory or lies under a file.
    """
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{target}: is a directory, expected a file path to write")
    for parent in reversed(target.parents):
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{target}: cannot write under {parent}, which is a file")
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


def staged_kind(path: PathLike) -> str | None:
    """The ``kind`` recorded by :func:`staged_dir` in a directory, or None if not ours."""
    marker = Path(path) / STAGED_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(data.get("kind", "")) if isinstance(data, dict) else ""


def _check_replaceable(target: Path, replace: bool, kind: str) -> None:
    present = _entries(target)
    if not present:
        return
    if not replace:
        raise UserError(
            f"{target}: not empty ({len(present)} entries, e.g. {present[0]!r}); refusing to "
            "merge a new artifact into it: choose an empty or new directory"
        )
    old_kind = staged_kind(target)
    if old_kind is None:
        raise UserError(
            f"{target}: holds files that ppminilm did not write (e.g. {present[0]!r}); refusing "
            "to replace it: choose an empty or new directory"
        )
    if kind and old_kind and old_kind != kind:
        raise UserError(
            f"{target}: holds a {old_kind!r} artifact; refusing to replace it with a {kind!r} "
            "one: choose another directory (or delete it first)"
        )


#: Temp and old-version siblings of a target: ``.<name>.tmp-<host>-<pid>-<random>``.
_SIBLING_RE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?P<host>[^-]+)-(?P<pid>\d+)-")


def _sibling_prefix(target: Path, what: str) -> str:
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    return f".{target.name}.{what}-{host}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_siblings(target: PathLike) -> list[Path]:
    """Remove temp/old siblings of ``target`` that a killed process of this host left.

    Only entries whose recorded process no longer runs on this host are removed, so a
    concurrent writer's temp directory is never touched.

    Returns:
        The removed paths.
    """
    path = Path(target)
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed
    for entry in path.parent.iterdir():
        match = _SIBLING_RE.match(entry.name)
        if match is None or match.group("name") != path.name or match.group("host") != host:
            continue
        if _pid_alive(int(match.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    if removed:
        logger.info("removed %d leftover temp dir(s) of %s", len(removed), path)
    return removed


@contextlib.contextmanager
def staged_dir(out_dir: PathLike, *, replace: bool = False, kind: str = "") -> Iterator[Path]:
    """Write a directory all or nothing: yields an empty temp dir beside ``out_dir``.

    On normal exit the temp dir becomes ``out_dir``; on an exception (or a signal turned into
    one) it is removed and ``out_dir`` is left exactly as it was.

    Args:
        out_dir: Target directory. It may be missing or empty (a KFP output path is).
        replace: Swap out a non-empty ``out_dir`` whole. Without it a non-empty target is
            refused. Even with it, a target holding files that no ppminilm stage wrote (no
            :data:`STAGED_MARKER`) or an artifact of another ``kind`` is refused, so user files
            and other results are never deleted.
        kind: What the directory holds, recorded in the marker (``model``, ``task``...).

    Raises:
        UserError: If ``out_dir`` is a file, or non-empty and not replaceable.
    """
    target = Path(out_dir)
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: is a file, expected a directory to write")
    _check_replaceable(target, replace, kind)
    _make_parent(target)
    remove_stale_siblings(target)
    tmp = Path(tempfile.mkdtemp(prefix=_sibling_prefix(target, "tmp"), dir=target.parent))
    try:
        yield tmp
        (tmp / STAGED_MARKER).write_text(dumps_json({"kind": kind}), encoding="utf-8")
        # Checked again: the target may have changed while the directory was being built.
        _check_replaceable(target, replace, kind)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with ``renameat2(RENAME_EXCHANGE)``; False if unsupported."""
    global _renameat2
    if _renameat2 is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _renameat2 = libc.renameat2
            _renameat2.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_uint,
            ]
        except (OSError, AttributeError):
            _renameat2 = False
    if not _renameat2:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel lacks it
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, target: Path) -> None:
    """Move a finished temp dir to ``target``, replacing what is there.

    A non-empty target is exchanged with the temp dir in one atomic step where the kernel
    and filesystem allow it; otherwise two renames run with SIGTERM/SIGINT deferred.
    """
    if not target.exists():
        os.replace(tmp, target)
        return
    if not _entries(target):
        target.rmdir()
        os.replace(tmp, target)
        return
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous version
        return
    old = target.parent / (_sibling_prefix(target, "old") + "swap")
    shutil.rmtree(old, ignore_errors=True)
    with deferred_signals():
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)  # put the previous version back
            raise
    shutil.rmtree(old, ignore_errors=True)


#: Signals :func:`deferred_signals` holds back.
_DEFERRED = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGTERM and SIGINT back for the enclosed system calls.

    A signal that arrives meanwhile is delivered when the block ends, so a step that must not
    be split (two renames, a manifest publish) completes first. Outside the main thread it does
    nothing.

    A signal mask alone is not enough: ``pthread_sigmask`` blocks the calling thread only, and
    the kernel hands a process-directed SIGTERM to any thread that does not block it (Paddle's
    and OpenVINO's worker threads), after which Python runs the handler in the main thread at
    once. So the Python-level handlers are swapped for one that records the signal, and the
    recorded signals are raised again, under the restored handlers, when the block ends. Where
    a handler was installed outside Python (``signal.getsignal`` gives None; it could not be
    restored), the mask is used instead.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _DEFERRED}
    if any(handler is None for handler in previous.values()):
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return
    pending: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        pending.append(signum)

    for signum in _DEFERRED:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for held in dict.fromkeys(pending):
            signal.raise_signal(held)


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
