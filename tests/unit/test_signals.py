"""SIGTERM during a stage: exit 143 with one line, no (C++) traceback, the output untouched.

Each case runs ``python -m ppminilm <stage>`` over an output directory that already holds a
previous result of the same stage, waits until the stage is under way (a log line of it),
sends SIGTERM and checks the exit code, the output, and that the previous result is there
byte for byte with no temp directory left beside it. Without the runner's handler Python
dies on the spot, and once paddle is imported its own handler prints a C++ stack dump.
Distillation (which checkpoints first) and object-storage copies have their own SIGTERM tests
(test_distill.py, test_storage_kill.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from faultmatrix.fixtures import Fixtures

from ppminilm.config import DataConfig
from ppminilm.errors import EXIT_PREEMPTED

pytestmark = pytest.mark.integration

#: Seconds a stage may take to reach its log line, and to exit after SIGTERM.
START_TIMEOUT_S = 180
EXIT_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("signal-fixtures"))


def _state(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _terminate_when(argv: list[str], line_marker: str) -> tuple[int, str]:
    """Run ``ppminilm argv``; SIGTERM it once ``line_marker`` appears on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppminilm", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.stderr is not None and proc.stdout is not None
    seen = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line_marker in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not seen.wait(START_TIMEOUT_S):
        proc.kill()
        pytest.fail(f"never saw {line_marker!r}:\n{''.join(lines)[-3000:]}")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(EXIT_TIMEOUT_S)
    reader.join(EXIT_TIMEOUT_S)
    return code, proc.stdout.read() + "".join(lines)


def _check(code: int, output: str, out: Path, before: dict[str, str]) -> None:
    assert code == EXIT_PREEMPTED, output[-3000:]
    assert "Traceback" not in output, output[-3000:]  # neither Python's nor paddle's C++ one
    assert "received SIGTERM" in output, output[-3000:]
    assert _state(out) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_sigterm_during_data_build_keeps_the_previous_build(
    local_data_config: DataConfig, tmp_path: Path
) -> None:
    from ppminilm.data.local import build_local

    out = tmp_path / "data"
    build_local(out, local_data_config)
    before = _state(out)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**local_data_config.to_dict(), "seed": 99}))
    code, output = _terminate_when(
        ["data", "build-local", "--out", str(out), "--config", str(config)], "news articles"
    )
    _check(code, output, out, before)


def test_sigterm_during_finetune_keeps_the_previous_model(fx: Fixtures, tmp_path: Path) -> None:
    out = fx.copy("classifier", tmp_path / "model")
    before = _state(out)
    argv = [
        "finetune", "--task-dir", str(fx.get("task")), "--init", "scratch",
        "--tokenizer-dir", str(fx.get("vocab")), "--out", str(out), "--max-steps", "100000",
        "--batch-size", "2", "--max-seq-len", "16", "--eval-steps", "100000",
    ]  # fmt: skip
    start = time.monotonic()
    code, output = _terminate_when(argv, "fine-tune local_reviews from")
    _check(code, output, out, before)
    assert time.monotonic() - start < START_TIMEOUT_S + EXIT_TIMEOUT_S


def test_sigterm_during_benchmark_keeps_the_previous_result(fx: Fixtures, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    (out / "benchmark.json").write_text('{"previous": true}\n')
    before = _state(out)
    argv = [
        "infer", "bench", "--model-dir", str(fx.get("inference")), "--task-dir",
        str(fx.get("task")), "--out-dir", str(out), "--repeats", "100000",
        "--warmup-batches", "1", "--no-mkldnn", "--max-seq-len", "16",
    ]  # fmt: skip
    code, output = _terminate_when(argv, "pass 1/")
    _check(code, output, out, before)
