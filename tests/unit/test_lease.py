"""The checkpoint-directory lease, on a local directory and on S3 (moto, conditional writes).

Time is a test clock, so expiry is exercised without waiting for the TTL.
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import minio
import pytest
from s3server import RunningS3Server

from ppminilm import storage
from ppminilm.training.lease import (
    LEASE_FILE,
    LEASE_TTL_S,
    RUN_ID_ENV,
    CheckpointLease,
    CheckpointLeaseError,
    run_id_for,
)

TTL = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "s3"])
def directory(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "ckpt")
    server: RunningS3Server = request.getfixturevalue("s3_env")
    bucket = f"lease-{uuid.uuid4().hex[:12]}"
    minio.Minio(
        server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1"
    ).make_bucket(bucket)
    return f"s3://{bucket}/run/ckpt"


def _record(directory: str) -> dict:
    return json.loads(storage.read_text(f"{directory}/{LEASE_FILE}"))


def test_ttl_is_stated_and_renewal_comes_well_before_it() -> None:
    assert LEASE_TTL_S == 600.0
    clock = Clock()
    lease = CheckpointLease("unused", "r", ttl_s=TTL, clock=clock)
    assert lease.ttl_s == TTL


def test_second_run_is_refused_while_the_lease_lives(directory: str) -> None:
    clock = Clock()
    with CheckpointLease(directory, "run-a", ttl_s=TTL, clock=clock):
        record = _record(directory)
        assert record["run"] == "run-a" and record["expires"] == clock.now + TTL
        clock.now += TTL / 2
        with pytest.raises(CheckpointLeaseError, match="run-a") as info:
            CheckpointLease(directory, "run-b", ttl_s=TTL, clock=clock).acquire()
        assert directory in str(info.value) and RUN_ID_ENV in str(info.value)
        assert info.value.exit_code == 2
    assert not storage.exists(f"{directory}/{LEASE_FILE}")  # released on exit
    with CheckpointLease(directory, "run-b", ttl_s=TTL, clock=clock):
        assert _record(directory)["run"] == "run-b"


def test_same_run_reclaims_at_once(directory: str) -> None:
    """A pre-empted or killed task of the same run resumes without waiting for the TTL."""
    clock = Clock()
    killed = CheckpointLease(directory, "run-a", ttl_s=TTL, clock=clock).acquire()
    killed.holder = "node-1:99"  # never released: the pod died
    retry = CheckpointLease(directory, "run-a", ttl_s=TTL, clock=clock)
    retry.acquire()
    assert _record(directory)["holder"] == retry.holder
    retry.release()


def test_expired_lease_of_another_run_is_taken_over(directory: str) -> None:
    clock = Clock()
    dead = CheckpointLease(directory, "run-a", ttl_s=TTL, clock=clock).acquire()
    clock.now += TTL + 1
    taker = CheckpointLease(directory, "run-b", ttl_s=TTL, clock=clock).acquire()
    assert _record(directory)["run"] == "run-b"
    # The old holder notices at its next renewal and stops instead of mixing checkpoints.
    with pytest.raises(CheckpointLeaseError, match="lost the checkpoint lease"):
        dead.renew()
    taker.release()


def test_keep_alive_renews_after_a_third_of_the_ttl(directory: str) -> None:
    clock = Clock()
    with CheckpointLease(directory, "run-a", ttl_s=TTL, clock=clock) as lease:
        first = _record(directory)["expires"]
        clock.now += TTL / 4
        lease.keep_alive()
        assert _record(directory)["expires"] == first  # not due yet
        clock.now += TTL / 4
        lease.keep_alive()
        assert _record(directory)["expires"] == clock.now + TTL
        clock.now += TTL * 0.9  # renewed: another run still cannot take it
        with pytest.raises(CheckpointLeaseError):
            CheckpointLease(directory, "run-b", ttl_s=TTL, clock=clock).acquire()


def test_racing_runs_get_one_lease(directory: str) -> None:
    """Eight runs start on one directory at once: exactly one holds it (conditional create)."""
    clock = Clock()
    outcomes: dict[str, str] = {}
    start = threading.Barrier(8)

    def contend(run: str) -> None:
        start.wait()
        try:
            CheckpointLease(directory, run, ttl_s=TTL, clock=clock).acquire()
            outcomes[run] = "held"
        except CheckpointLeaseError:
            outcomes[run] = "refused"

    threads = [threading.Thread(target=contend, args=(f"run-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    held = [r for r, o in outcomes.items() if o == "held"]
    assert len(held) == 1 and len(outcomes) == 8
    assert _record(directory)["run"] == held[0]


def test_a_file_is_not_a_checkpoint_directory(tmp_path: Path) -> None:
    path = tmp_path / "ckpt"
    path.write_text("a file")
    with pytest.raises(ValueError, match=str(path)):
        CheckpointLease(path, "r").acquire()


def test_run_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    assert run_id_for(tmp_path / "out") == run_id_for(str(tmp_path / "out"))
    assert run_id_for(tmp_path / "out") != run_id_for(tmp_path / "other")
    assert run_id_for("s3://b/run1/student") != run_id_for("s3://b/run2/student")
    monkeypatch.setenv(RUN_ID_ENV, "kfp-run-42")
    assert run_id_for(tmp_path / "out") == "kfp-run-42"
