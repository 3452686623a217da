"""The one local I/O layer: staged directories, atomic files, deferred signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ppminilm import io
from ppminilm.errors import UserError


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and p.name != io.STAGED_MARKER
    }


def _write_dir(target: Path, kind: str, files: dict[str, str], replace: bool = True) -> None:
    with io.staged_dir(target, replace=replace, kind=kind) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_staged_dir_replaces_its_own_kind_whole(tmp_path: Path) -> None:
    out = tmp_path / "model"
    _write_dir(out, "model", {"a.txt": "v1", "only_v1.txt": "x"})
    _write_dir(out, "model", {"a.txt": "v2"})
    assert _files(out) == {"a.txt": "v2"}  # replaced, never merged
    assert io.staged_kind(out) == "model"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp or old dir left


def test_staged_dir_refuses_another_kind_and_foreign_files(tmp_path: Path) -> None:
    out = tmp_path / "model"
    _write_dir(out, "model", {"weights": "trained for days"})
    with pytest.raises(UserError, match=r"holds a 'model' artifact.*'inference'"):
        _write_dir(out, "inference", {"program": "x"})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(UserError, match="did not write"):
        _write_dir(mine, "model", {"x": "y"})
    with pytest.raises(UserError, match="not empty"):
        _write_dir(out, "model", {"x": "y"}, replace=False)
    assert _files(out) == {"weights": "trained for days"}
    assert _files(mine) == {"thesis.tex": "mine"}


def test_failure_inside_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "data"
    _write_dir(out, "data", {"v": "1"})
    with pytest.raises(RuntimeError), io.staged_dir(out, replace=True, kind="data") as tmp:
        (tmp / "v").write_text("2")
        raise RuntimeError("killed half way")
    assert _files(out) == {"v": "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


@pytest.mark.integration  # starts another interpreter
def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path: Path) -> None:
    """A child is SIGKILLed inside staged_dir; the next write removes its temp dir."""
    out = tmp_path / "out"
    code = (
        "import os, signal, sys\n"
        "from ppminilm.io import staged_dir\n"
        f"with staged_dir({str(out)!r}, kind='x') as tmp:\n"
        "    (tmp / 'half').write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp-")]
    assert len(left) == 1 and not out.exists()
    _write_dir(out, "x", {"whole": "yes"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert _files(out) == {"whole": "yes"}


def test_a_live_writers_temp_dir_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with io.staged_dir(out, kind="x") as mine:
        (mine / "f").write_text("in progress")
        other = tmp_path / "other"
        _write_dir(other, "x", {"g": "1"})
        assert mine.is_dir()  # same process (alive): not a leftover
        io.remove_stale_siblings(out)
        assert mine.is_dir()
    assert _files(out) == {"f": "in progress"}


def test_swap_is_one_atomic_exchange_where_the_kernel_has_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    if not io._exchange(a, b):
        pytest.skip("renameat2(RENAME_EXCHANGE) unsupported here (the two-rename path is used)")
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


@pytest.mark.parametrize("worker_threads", [0, 4])
def test_deferred_signals_hold_sigterm_until_the_block_ends(worker_threads: int) -> None:
    # With worker threads (paddle's, openvino's), a mask on the main thread alone would let
    # the kernel hand the signal to a worker and Python would run the handler at once.
    received: list[int] = []
    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(worker_threads)]
    for w in workers:
        w.start()
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    try:
        with io.deferred_signals():
            for _ in range(3):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.01)  # let the handler run, were it not deferred
            assert received == []  # pending, not delivered
            assert signal.getsignal(signal.SIGTERM) is not previous
        assert received == [signal.SIGTERM]  # delivered once, under the restored handler
        assert signal.getsignal(signal.SIGTERM) is not None
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        for w in workers:
            w.join()


def test_atomic_write_and_targets(tmp_path: Path) -> None:
    path = io.atomic_write_json(tmp_path / "a" / "b.json", {"k": "值"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"k": "值"}
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    for bad in (blocker / "x.json", tmp_path / "a"):
        with pytest.raises(UserError, match=str(bad.parent if bad.parent == blocker else bad)):
            io.check_file_target(bad)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["b.json"]


def test_decode_text_names_the_line() -> None:
    with pytest.raises(UserError, match=r"s3://b/k.json:2: not UTF-8"):
        io.decode_text(b'{"a": 1,\n "b": "\xff"}', "s3://b/k.json")
