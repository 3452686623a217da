"""A lease on a checkpoint directory: one run writes it at a time.

Two runs that share a checkpoint directory would interleave their checkpoints and resume from
each other's. The run that trains holds ``<checkpoint dir>/_LEASE``, a small JSON record::

    {"run": "...", "holder": "host:pid", "acquired": t, "renewed": t, "expires": t + ttl}

* **Acquire**: take the lease if there is none, if it has expired, or if it is this run's own
  (a retried or pre-empted task of the same run resumes at once, without waiting for the TTL).
  A live lease of another run is refused with an error naming it and when it expires.
* **Renew**: the holder rewrites it whenever a third of the TTL has passed (every training
  step checks), so a live run never loses it; a run that stops renewing (SIGKILL, a dead node)
  frees the directory after :data:`LEASE_TTL_S`.
* **Release**: removed when the run ends, however it ends (a SIGTERM included).

Race-free takeover: on object storage with conditional writes (create with
``If-None-Match: *``, replace with ``If-Match: <etag>`` of the record that was read); on a
local or shared filesystem under an exclusive ``flock`` of ``.lease.lock``. Expiry is judged
with the reader's clock against the ``expires`` the holder wrote, so clocks of the nodes must
agree to well within the TTL (NTP does).

The run id comes from ``PPMINILM_RUN_ID`` when set; otherwise from the step's output location
(:func:`run_id_for`), which a KFP retry of the same task shares and another run does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ppminilm.errors import UserError
from ppminilm.io import atomic_write_json, dumps_json, is_remote

logger = logging.getLogger(__name__)

LEASE_FILE = "_LEASE"
_LOCK_FILE = ".lease.lock"
#: Seconds a lease lives without renewal: far above the renewal interval (a third of it,
#: checked every training step) and a checkpoint upload, short enough that the directory of a
#: killed run is free again within minutes.
LEASE_TTL_S = 600.0
#: Environment variable that names the run (overrides :func:`run_id_for`).
RUN_ID_ENV = "PPMINILM_RUN_ID"
_TAKEOVER_ATTEMPTS = 3


class CheckpointLeaseError(UserError):
    """Another run holds the checkpoint directory (or took it over from this one)."""


def run_id_for(out: str | os.PathLike[str]) -> str:
    """The run id: ``PPMINILM_RUN_ID``, else a hash of the step's output location.

    Args:
        out: The step's output directory or URI (a KFP task's is unique to the run and shared
            by its retries).
    """
    explicit = os.environ.get(RUN_ID_ENV, "").strip()
    if explicit:
        return explicit
    where = str(out) if is_remote(str(out)) else str(Path(out).resolve())
    return "out-" + hashlib.sha256(where.encode("utf-8")).hexdigest()[:16]


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class CheckpointLease:
    """The lease of one run on one checkpoint directory (local path or ``s3://`` prefix).

    Use as a context manager (acquire on enter, release on exit) and call :meth:`keep_alive`
    regularly (every step).

    Args:
        directory: The checkpoint directory or URI prefix.
        run: This run's id (:func:`run_id_for`).
        ttl_s: Lifetime without renewal, seconds.
        clock: Time source (seconds since the epoch).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        run: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = str(directory).rstrip("/")
        self.run = run
        self.ttl_s = float(ttl_s)
        self.holder = _holder()
        self._clock = clock
        self._remote = is_remote(self.directory)
        self._etag: str | None = None
        self._renewed = 0.0
        self._acquired = 0.0
        self.held = False

    @property
    def uri(self) -> str:
        """Where the lease record lives."""
        return f"{self.directory}/{LEASE_FILE}"

    def _record(self) -> bytes:
        now = self._clock()
        return dumps_json(
            {
                "run": self.run,
                "holder": self.holder,
                "acquired": self._acquired or now,
                "renewed": now,
                "expires": now + self.ttl_s,
                "ttl_s": self.ttl_s,
            }
        ).encode("utf-8")

    def _check_other(self, record: dict[str, Any] | None) -> None:
        """Raise unless ``record`` is absent, expired, damaged or this run's."""
        if record is None or record.get("run") == self.run:
            return
        expires = record.get("expires")
        if not isinstance(expires, int | float):
            logger.warning("%s: unreadable lease record, taking it over", self.uri)
            return
        left = float(expires) - self._clock()
        if left <= 0:
            logger.warning(
                "%s: the lease of run %r (%s) expired %.0f s ago; taking it over",
                self.uri,
                record.get("run"),
                record.get("holder"),
                -left,
            )
            return
        raise CheckpointLeaseError(
            f"{self.directory}: checkpoint directory is in use by run {record.get('run')!r} "
            f"({record.get('holder')}); its lease expires in {left:.0f} s unless renewed. Use "
            f"another checkpoint directory, or set {RUN_ID_ENV} to that run's id to resume it"
        )

    # ------------------------------------------------------------------ local

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Path]:
        root = Path(self.directory)
        if root.exists() and not root.is_dir():
            raise UserError(f"{root}: is a file, expected a checkpoint directory")
        for parent in root.parents:
            if parent.exists() and not parent.is_dir():
                raise UserError(f"{root}: cannot create it under {parent}, which is a file")
        root.mkdir(parents=True, exist_ok=True)
        with open(root / _LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield root
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_local(self, root: Path) -> dict[str, Any] | None:
        path = root / LEASE_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    # ------------------------------------------------------------------ remote

    def _read_remote(self) -> tuple[dict[str, Any] | None, str | None]:
        from ppminilm import storage

        try:
            raw, etag = storage.read_bytes_and_etag(self.uri)
        except storage.ObjectNotFoundError:
            return None, None
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            data = {}
        return (data if isinstance(data, dict) else {}), etag

    def _acquire_remote(self) -> None:
        from ppminilm import storage

        for _ in range(_TAKEOVER_ATTEMPTS):
            try:
                self._etag = storage.put_bytes_if(self.uri, self._record(), if_none_match=True)
                return
            except storage.WriteConflictError:
                pass
            record, etag = self._read_remote()
            if record is None:  # released meanwhile: create it again
                continue
            self._check_other(record)
            try:
                self._etag = storage.put_bytes_if(self.uri, self._record(), if_match=etag)
                return
            except storage.WriteConflictError:
                continue  # another run took it first: look again
        raise CheckpointLeaseError(
            f"{self.directory}: could not take the checkpoint lease ({self.uri} kept changing: "
            "another run is starting on the same directory)"
        )

    # ------------------------------------------------------------------ public

    def acquire(self) -> CheckpointLease:
        """Take the lease (see the module docstring).

        Raises:
            CheckpointLeaseError: If another run holds a live lease.
            UserError: If the directory is a file.
        """
        self._acquired = self._clock()
        if self._remote:
            self._acquire_remote()
        else:
            with self._locked() as root:
                self._check_other(self._read_local(root))
                atomic_write_json(root / LEASE_FILE, json.loads(self._record()))
        self._renewed = self._clock()
        self.held = True
        logger.info(
            "holding the checkpoint lease %s (run %s, ttl %.0f s)", self.uri, self.run, self.ttl_s
        )
        return self

    def renew(self) -> None:
        """Extend the lease now.

        Raises:
            CheckpointLeaseError: If another run took it over (this run had stopped renewing
                for longer than the TTL).
        """
        lost = CheckpointLeaseError(
            f"{self.directory}: lost the checkpoint lease to another run (no renewal for more "
            f"than {self.ttl_s:.0f} s); stopping so the two runs do not mix checkpoints"
        )
        if self._remote:
            from ppminilm import storage

            try:
                self._etag = storage.put_bytes_if(self.uri, self._record(), if_match=self._etag)
            except (storage.WriteConflictError, storage.ObjectNotFoundError):
                self.held = False
                raise lost from None
        else:
            with self._locked() as root:
                record = self._read_local(root) or {}
                if record.get("run") != self.run or record.get("holder") != self.holder:
                    self.held = False
                    raise lost
                atomic_write_json(root / LEASE_FILE, json.loads(self._record()))
        self._renewed = self._clock()

    def keep_alive(self) -> None:
        """Renew if a third of the TTL has passed since the last renewal (cheap otherwise)."""
        if self.held and self._clock() - self._renewed >= self.ttl_s / 3:
            self.renew()

    def release(self) -> None:
        """Give the lease up (best effort: a failure only delays the next run by the TTL)."""
        if not self.held:
            return
        self.held = False
        try:
            if self._remote:
                from ppminilm import storage

                if self._etag:
                    storage.remove_if(self.uri, self._etag)
            else:
                with self._locked() as root:
                    record = self._read_local(root) or {}
                    if record.get("run") == self.run and record.get("holder") == self.holder:
                        (root / LEASE_FILE).unlink(missing_ok=True)
        except Exception as exc:
            logger.warning("could not release the checkpoint lease %s: %s", self.uri, exc)

    def __enter__(self) -> CheckpointLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
