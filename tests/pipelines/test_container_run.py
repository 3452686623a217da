"""The tiny pipeline in the real CPU image (``--runner docker``), against the subprocess run.

Each step runs in ``ppminilm-cpu`` through ``kfp.local.DockerRunner`` as the image's non-root
user. ``DockerRunner`` removes containers itself and reports SUCCESS when a container vanished
before it was awaited, so the test checks the outputs of every step, not only the status. Needs
a Docker engine and the CPU image built from this working tree (``make images``): skipped
without them, a failure under CI.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from images.spec import IMAGE_UID, image_specs, source_digest
from tests.pipelines.tiny_run import report_rows, run_tiny_pipeline

#: Runs the pipeline twice, in containers and in subprocesses (not in make test-fast).
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: The tiny run's report rows that carry trained models (tests/pipelines/test_local_run.py).
ROWS = (
    "local 6L-64H student FP32",
    "local 6L-64H width 0.75 FP32",
    "local 6L-64H width 0.75 INT8",
    "local 6L-64H width 0.5 FP32",
    "local 6L-64H width 0.5 INT8",
)
#: Report columns that must be identical between the runners (speed-up is a timing).
SAME_COLUMNS = {1: "#Params", 2: "#FLOPs", 4: "accuracy"}


def _docker_env() -> dict[str, str]:
    host = subprocess.run(
        ["bash", str(REPO / "scripts" / "dockerd.sh"), "host"], capture_output=True, text=True
    ).stdout.strip()
    problem = ""
    if not host:
        problem = "no Docker engine answers (scripts/dockerd.sh start)"
    else:
        spec = image_specs()["cpu"]
        env = {**os.environ, "DOCKER_HOST": host}
        proc = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", spec.tag],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        labels = json.loads(proc.stdout) if proc.returncode == 0 else None
        if labels is None:
            problem = f"{spec.tag} is not built (make images)"
        elif (labels or {}).get("io.ppminilm.source-digest") != source_digest(spec):
            problem = f"{spec.tag} is stale (make images)"
        else:
            return env
    if os.environ.get("CI"):
        pytest.fail(problem)
    pytest.skip(problem)


def _weights(out: Path) -> dict[str, str]:
    """``path in the run -> sha256`` of every trained weight file (quantized ones excepted:
    the PTQ pick breaks accuracy ties by measured speed, and the INT8 benchmark's deployable
    is whichever engine's model was fastest)."""
    (run_dir,) = [p for p in (out / "pipeline_root").iterdir() if p.is_dir()]
    return {
        p.relative_to(run_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in run_dir.rglob("*")
        if p.suffix in (".safetensors", ".pdparams", ".pdiparams")
        and "/quantize-" not in p.as_posix()
        and "/deployable/" not in p.as_posix()
    }


def test_pipeline_in_containers_matches_the_subprocess_run(tiny_subprocess_run, tmp_path) -> None:
    env = _docker_env()
    run = run_tiny_pipeline(tmp_path / "docker", runner="docker", env=env)
    assert run.last["runner"] == "docker"
    root = tmp_path / "docker" / "pipeline_root"
    (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
    # Every step that ran wrote its executor output, as the image user, group-writable.
    outputs = sorted(run_dir.glob("**/executor_output.json"))
    executed = run.proc.stdout.count("Executing task") + run.proc.stderr.count("Executing task")
    assert outputs and len(outputs) >= executed // 2, (len(outputs), executed)
    for path in outputs:
        stat = path.stat()
        assert stat.st_uid == IMAGE_UID, path
        assert stat.st_gid == os.getgid(), path
    assert stat.st_mode & 0o020, "steps write group-writable files (umask 0002)"
    # The last step (the run report, in the image) finished and wrote its bundle.
    assert (run_dir / "report-2" / "bundle").is_dir()
    assert json.loads((tmp_path / "docker" / "report.json").read_text())["summary"]
    html = (tmp_path / "docker" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    # The same numbers as the venv: params, FLOPs and accuracies of every row.
    ours = report_rows(run.report, ROWS)
    theirs = report_rows(tiny_subprocess_run.report, ROWS)
    for row in ROWS:
        for col, name in SAME_COLUMNS.items():
            assert ours[row][col] == theirs[row][col], (row, name, ours[row], theirs[row])
    # Bit for bit: the teacher, the distilled student, every fine-tuned and the pruned model.
    ours_w, theirs_w = _weights(tmp_path / "docker"), _weights(tiny_subprocess_run.out)
    assert len(ours_w) >= 6 and ours_w == theirs_w
