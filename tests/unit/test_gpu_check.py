"""scripts/gpu-check.sh (benchmarks/gpu_check.py): reports the machine, skips what cannot run.

No GPU here: the script is run for real on this CPU machine (paddle sections run on CPU, the
GPU ones are skipped with the reason) and on a "GPU machine without paddle" simulated by a fake
``nvidia-smi`` on PATH and an interpreter that sees no site-packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import EXIT_NO_GPU, exit_status, parse_nvidia_smi

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu-check.sh"
TIMEOUT_S = 300

FAKE_SMI_CSV = "NVIDIA H200, 550.54.15, 143771 MiB, 9.0\nNVIDIA H200, 550.54.15, 143771 MiB, 9.0\n"
FAKE_SMI_BANNER = (
    "+---------------------------------------------------------------------------+\n"
    "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4    |\n"
)


def test_parse_nvidia_smi() -> None:
    facts = parse_nvidia_smi(FAKE_SMI_CSV, FAKE_SMI_BANNER)
    assert len(facts["gpus"]) == 2 and facts["gpus"][0]["compute"] == "9.0"
    assert facts["driver"] == "550.54.15" and facts["driver_cuda"] == "12.4"
    assert facts["driver_supports_wheel_cuda"] is True
    old = parse_nvidia_smi("Tesla V100, 450.80.02, 16160 MiB, 7.0", "CUDA Version: 11.0")
    assert old["driver_supports_wheel_cuda"] is False
    assert parse_nvidia_smi("", "")["gpus"] == []


def _run(tmp_path: Path, env: dict[str, str]) -> tuple[int, dict, str]:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
    )
    assert out.is_file(), proc.stdout + proc.stderr
    return proc.returncode, json.loads(out.read_text()), proc.stdout


@pytest.mark.integration  # runs the script (child interpreters)
def test_on_this_cpu_machine_the_gpu_sections_are_skipped_with_the_reason(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PATH": "/usr/bin:/bin"}
    code, report, stdout = _run(tmp_path, env)
    sections = report["sections"]
    assert code == EXIT_NO_GPU == exit_status(report)
    assert sections["machine"]["nvidia_smi"]["gpus"] == []
    assert (
        sections["paddle"]["status"] == "ok" and sections["paddle"]["compiled_with_cuda"] is False
    )
    assert sections["run_check"]["status"] == "ok" and sections["run_check"]["gpu"] is False
    for name in ("tensorrt", "distill_amp", "distill_ranks"):
        assert sections[name] == {
            "status": "skipped",
            "reason": "no NVIDIA GPU/driver on this machine",
        }
    assert "could not: run_check: ran on CPU only (no usable GPU)" in stdout


@pytest.mark.integration
def test_a_gpu_machine_without_paddle_is_reported_plainly(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        f"if [ \"$1\" = \"\" ]; then printf '%s' '{FAKE_SMI_BANNER}'; "
        f"else printf '%s' '{FAKE_SMI_CSV}'; fi\n"
    )
    smi.chmod(0o755)
    bare = bin_dir / "bare-python"  # an interpreter that sees no installed package
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    env = {**os.environ, "PYTHON": str(bare), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    code, report, stdout = _run(tmp_path, env)
    sections = report["sections"]
    smi_facts = sections["machine"]["nvidia_smi"]
    assert [g["name"] for g in smi_facts["gpus"]] == ["NVIDIA H200", "NVIDIA H200"]
    assert smi_facts["driver_cuda"] == "12.4"
    assert sections["machine"]["packages"]["paddlepaddle-gpu"] is None
    for name in ("paddle", "run_check", "tensorrt", "distill_amp"):
        assert sections[name]["status"] == "skipped"
        assert "no paddle installed" in sections[name]["reason"]
    assert code == EXIT_NO_GPU
    assert "could not: paddle: no paddle installed" in stdout
