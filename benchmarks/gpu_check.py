"""Device check for a GPU machine (``scripts/gpu-check.sh``): what it has, what Paddle does on it.

Writes one JSON (``--out``) with a section per check, each ``ok``, ``skipped`` (with the reason)
or ``failed`` (with the error), and a plain list of what could not be done:

1. ``machine`` -- driver, GPUs, CUDA version the driver supports, ``nvcc``, Python, installed
   packages (any paddle), the CUDA/cuDNN/cuBLAS/TensorRT libraries the loader can find
   (unversioned names too: paddle dlopens ``libcudnn.so``, ``libcublas.so``, ``libnvinfer.so``).
   Standard library only, so it runs on a bare machine.
2. ``paddle`` -- version, CUDA/cuDNN it was built with, TensorRT compile/runtime versions, GPUs.
3. ``run_check`` -- ``paddle.utils.run_check()``.
4. ``tensorrt`` -- the bench's TensorRT rows at the seed shapes (batch 32 x 128): BERT-base
   12L-768H, 6L-768H, 6L pruned 0.75 in FP32 and FP16, the pruned model INT8 (PTQ), random
   weights (speed only), through the project's Predictor and timing code.
5. ``distill_amp`` -- a short AMP distillation on one GPU (tiny teacher/student, synthetic
   corpus) through ``run_distill``; ``distill_ranks`` -- the same on 2 GPUs through Paddle's
   launcher (NCCL), when the machine has 2.

Sections 2-5 run in child processes (a CUDA abort or a failed ``dlopen`` is reported, not fatal)
and are skipped with a reason when what they need is missing: no driver, no paddle, a CPU-only
paddle (the ``paddlepaddle-gpu==2.6.2`` wheel is 759 MB and built for CUDA 11.8: on a machine
without network it may simply not be there), no paddlenlp/paddleslim.

Exit status: 0 every section ran, 20 GPU sections were skipped (nothing to run them on),
1 a section failed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Packages whose presence and version the machine section reports.
PACKAGES = (
    "paddlepaddle-gpu",
    "paddlepaddle",
    "paddlenlp",
    "paddleslim",
    "tensorrt",
    "nvidia-cudnn-cu11",
    "nvidia-cublas-cu11",
    "nvidia-cuda-runtime-cu11",
    "numpy",
    "torch",
    "ppminilm-kfp",
)
#: Libraries paddle-gpu loads (unversioned names: what paddle dlopens) and their runtimes.
LIBRARIES = ("libcuda", "libcudart", "libcudnn", "libcublas", "libcublasLt", "libnvinfer")
#: The CUDA the paddlepaddle-gpu 2.6.2 wheel on PyPI is built for.
WHEEL_CUDA = "11.8"
#: Seconds a child section may take.
SECTION_TIMEOUT_S = {"paddle": 120, "run_check": 300, "tensorrt": 1500, "distill_amp": 600}
EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 1, 20
CHILD_SECTIONS = ("paddle", "run_check", "tensorrt", "distill_amp", "distill_ranks")


def _run(cmd: list[str], timeout: float = 30) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return proc.returncode, proc.stdout + proc.stderr


def parse_nvidia_smi(query_csv: str, banner: str) -> dict[str, Any]:
    """GPUs from ``--query-gpu=name,driver_version,memory.total,compute_cap`` CSV + banner."""
    gpus = []
    for line in query_csv.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 4:
            gpus.append(
                {"name": fields[0], "driver": fields[1], "memory": fields[2], "compute": fields[3]}
            )
    match = re.search(r"CUDA Version:\s*([0-9.]+)", banner)
    cuda = match.group(1) if match else None
    return {
        "gpus": gpus,
        "driver": gpus[0]["driver"] if gpus else None,
        "driver_cuda": cuda,
        "driver_supports_wheel_cuda": _version_ge(cuda, WHEEL_CUDA) if cuda else None,
    }


def _version_ge(a: str, b: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v))

    return key(a) >= key(b)


def _libraries() -> dict[str, list[str]]:
    """Library files the dynamic loader knows (``ldconfig -p``) per name, plus pip's nvidia."""
    rc, out = _run(["ldconfig", "-p"]) if shutil.which("ldconfig") else (-1, "")
    found: dict[str, list[str]] = {name: [] for name in LIBRARIES}
    lines = out.splitlines() if rc == 0 else []
    for root in [Path(p) for p in sys.path if p.endswith("site-packages")]:
        for lib in (root / "nvidia").glob("*/lib/lib*.so*") if (root / "nvidia").is_dir() else []:
            lines.append(f"{lib.name} => {lib}")
    for line in lines:
        soname = line.strip().split(" ", 1)[0]
        for name in LIBRARIES:
            if soname == f"{name}.so" or soname.startswith(f"{name}.so."):
                found[name].append(soname)
    return {name: sorted(set(v)) for name, v in found.items()}


def machine_facts() -> dict[str, Any]:
    """Section 1 (standard library only)."""
    facts: dict[str, Any] = {
        "status": "ok",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "dev_nvidia": sorted(p.name for p in Path("/dev").glob("nvidia*")),
    }
    smi = shutil.which("nvidia-smi")
    if smi:
        query = "--query-gpu=name,driver_version,memory.total,compute_cap"
        rc1, csv = _run([smi, query, "--format=csv,noheader"])
        rc2, banner = _run([smi])
        facts["nvidia_smi"] = parse_nvidia_smi(csv if rc1 == 0 else "", banner if rc2 == 0 else "")
        if rc1 != 0:
            facts["nvidia_smi"]["error"] = csv.strip()[-500:]
    else:
        facts["nvidia_smi"] = {"gpus": [], "error": "nvidia-smi not found (no NVIDIA driver?)"}
    nvcc = shutil.which("nvcc")
    facts["nvcc"] = _run([nvcc, "--version"])[1].strip().splitlines()[-1] if nvcc else None
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    facts["packages"] = packages
    facts["libraries"] = _libraries()
    return facts


def _child(section: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run a paddle-using section in a child interpreter; its JSON or the failure."""
    result_file = out.parent / f".{out.name}.{section}.json"
    cmd = [sys.executable, "-m", "benchmarks.gpu_sections", section, str(result_file)]
    cmd += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
    t0 = time.perf_counter()
    timeout = SECTION_TIMEOUT_S.get(section, 600)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, log = -1, f"timed out after {timeout} s: {exc}"
    seconds = round(time.perf_counter() - t0, 1)
    if result_file.is_file():
        result = json.loads(result_file.read_text(encoding="utf-8"))
        result_file.unlink()
    else:
        tail = "\n".join(log.strip().splitlines()[-30:])
        result = {"status": "failed", "error": f"exit {code} without a result", "log_tail": tail}
    result["seconds"] = seconds
    return result


def _skip(reason: str) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason}


def run_checks(args: argparse.Namespace) -> dict[str, Any]:
    """Every section, in order; later ones are skipped when an earlier one shows they cannot run."""
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sections: dict[str, Any] = {"machine": machine_facts()}
    packages = sections["machine"]["packages"]
    gpus = sections["machine"]["nvidia_smi"]["gpus"]
    if not (packages["paddlepaddle-gpu"] or packages["paddlepaddle"]):
        why = "no paddle installed (paddlepaddle-gpu==2.6.2, CUDA 11.8, is a 759 MB wheel)"
        for name in CHILD_SECTIONS:
            sections[name] = _skip(why)
    else:
        sections["paddle"] = _child("paddle", out, args)
        sections["run_check"] = _child("run_check", out, args)
        paddle = sections["paddle"]
        cuda = paddle.get("status") == "ok" and paddle.get("compiled_with_cuda")
        if not gpus:
            why = "no NVIDIA GPU/driver on this machine"
        elif not cuda:
            why = f"paddle here cannot use the GPU: {paddle.get('error') or 'CPU-only build'}"
        else:
            why = ""
        missing = [p for p in ("paddlenlp", "paddleslim") if not packages[p]]
        for name in ("tensorrt", "distill_amp", "distill_ranks"):
            if why:
                sections[name] = _skip(why)
            elif missing:
                sections[name] = _skip(f"needs {', '.join(missing)} (pip install -e .)")
            elif name == "tensorrt" and not paddle.get("trt_compile_version"):
                sections[name] = _skip("this paddle build has no TensorRT")
            elif name == "distill_ranks" and int(paddle.get("gpu_count") or 0) < 2:
                sections[name] = _skip("needs 2 GPUs (NCCL data-parallel run)")
            elif name in args.skip:
                sections[name] = _skip("--skip")
            else:
                sections[name] = _child(name, out, args)
    could_not = [
        f"{name}: {s.get('reason') or s.get('error')}"
        for name, s in sections.items()
        if s.get("status") != "ok"
    ]
    if sections.get("run_check", {}).get("status") == "ok" and not sections["run_check"].get("gpu"):
        could_not.append("run_check: ran on CPU only (no usable GPU)")
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "sections": sections,
        "could_not": could_not,
    }


def exit_status(report: dict[str, Any]) -> int:
    """0 all ran, 1 something failed, 20 GPU sections skipped."""
    statuses = [s.get("status") for s in report["sections"].values()]
    if "failed" in statuses:
        return EXIT_FAILED
    return EXIT_NO_GPU if "skipped" in statuses else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``scripts/gpu-check.sh``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gpu-check/gpu_check.json")
    p.add_argument("--steps", type=int, default=30, help="distillation steps")
    p.add_argument("--repeats", type=int, default=5, help="timed passes per TensorRT row")
    p.add_argument("--skip", nargs="*", default=[], choices=CHILD_SECTIONS[2:], help="skip these")
    args = p.parse_args(argv)
    report = run_checks(args)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    with tempfile.NamedTemporaryFile(
        "w", dir=Path(args.out).parent, delete=False, encoding="utf-8"
    ) as fh:
        fh.write(text)
    os.replace(fh.name, args.out)
    for name, s in report["sections"].items():
        detail = s.get("reason") or s.get("error") or s.get("summary") or ""
        print(f"{name:14s} {s.get('status'):8s} {detail}")
    for line in report["could_not"]:
        print(f"could not: {line}")
    print(f"wrote {args.out}")
    return exit_status(report)


if __name__ == "__main__":
    sys.exit(main())
