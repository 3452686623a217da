"""Dockerfile rules (hadolint-equivalent, as tests) and the images build script.

No Docker engine is needed: Dockerfiles are parsed as text, and scripts/images.sh runs against
fake ``docker`` commands. ``dockerfile_problems`` is also run on broken text to prove it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ppminilm import __version__
from ppminilm.cluster import platform

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
SCRIPT = REPO / "scripts" / "images.sh"
#: Exit code of scripts/images.sh when no Docker engine answers.
EXIT_NO_ENGINE = 3
NO_ENGINE_MESSAGE = "no Docker engine is running; images not built"
#: OCI labels every image carries.
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.licenses",
)
#: Paths the build context must never contain (.dockerignore patterns).
DOCKERIGNORED = (
    ".git",
    ".venv",
    "runs",
    "**/__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "**/*.env",
)
_CREDENTIAL_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|CREDENTIAL|AWS_", re.I)
_PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\"']+)$")


def constraints() -> dict[str, str]:
    """``name -> version`` from requirements/constraints.txt (names normalised)."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name.strip().lower())] = version.strip()
    return pins


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or (line.startswith("#") and not pending):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        cmd, _, args = full.partition(" ")
        out.append((cmd.upper(), args.strip()))
    return out


def arg_defaults(instrs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for c, a in instrs if c == "ARG" and "=" in a)


def expand(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), value)


def dockerfile_problems(text: str) -> list[str]:
    """Every rule, applied to one Dockerfile's text; an empty list means it passes."""
    instrs = instructions(text)
    args = arg_defaults(instrs)
    pins = constraints()
    problems: list[str] = []
    cmds = [c for c, _ in instrs]
    froms = [a.split()[0] for c, a in instrs if c == "FROM"]
    if not froms:
        problems.append("no FROM")
    for base in froms:
        ref = expand(base, args)
        tag = ref.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in ref and (not tag or tag == "latest" or not re.search(r"\d", tag)):
            problems.append(
                f"FROM {base}: base image not pinned to a versioned tag (DL3006/DL3007)"
            )
    users = [a for c, a in instrs if c == "USER"]
    if not users:
        problems.append("no USER: the image runs as root (DL3002)")
    else:
        user = users[-1]
        if not re.fullmatch(r"[1-9]\d*(:\d+)?", user):
            problems.append(f"USER {user}: expected a numeric, non-zero uid")
        last_user = max(i for i, c in enumerate(cmds) if c == "USER")
        if "RUN" in cmds[last_user:]:
            problems.append("RUN after the final USER")
    for cmd, body in instrs:
        if cmd in ("ENV", "ARG"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", " " + body) or [body.split("=")[0]]:
                if _CREDENTIAL_NAME.search(name):
                    problems.append(f"{cmd} {name}: credentials must not be baked into images")
        if cmd == "ADD" and re.search(r"https?://", body):
            problems.append("ADD from a URL: use a verified download in RUN (DL3020)")
        if cmd in ("COPY", "ADD") and re.search(r"\.env\b|credentials", body):
            problems.append(f"{cmd} {body}: copies credentials into the image")
        if cmd == "WORKDIR" and not body.startswith("/"):
            problems.append(f"WORKDIR {body}: use an absolute path (DL3000)")
        if cmd in ("CMD", "ENTRYPOINT") and not body.startswith("["):
            problems.append(f"{cmd}: use the exec (JSON) form (DL3025)")
        if cmd != "RUN":
            continue
        if re.search(r"(?<!\|)\|(?!\|)", body) and not any(
            c == "SHELL" and "pipefail" in a for c, a in instrs
        ):
            problems.append("RUN with a pipe but no SHELL with -o pipefail (DL4006)")
        if re.search(r"\bsudo\b", body):
            problems.append("sudo in RUN (DL3004)")
        if "apt-get install" in body:
            if "--no-install-recommends" not in body or not re.search(r"install -y|-y ", body):
                problems.append(
                    "apt-get install without -y --no-install-recommends (DL3014/DL3015)"
                )
            if "rm -rf /var/lib/apt/lists" not in body:
                problems.append("apt lists not removed in the same RUN (DL3009)")
        for pip in re.findall(r"pip3? install[^&;]*", body):
            if "--no-cache-dir" not in pip:
                problems.append(f"'{pip.strip()}': missing --no-cache-dir (DL3042)")
            if "-c requirements/constraints.txt" not in pip:
                problems.append(f"'{pip.strip()}': not constrained by requirements/constraints.txt")
            for word in pip.split()[2:]:
                word = expand(word.strip("\"'"), args)
                if word.startswith("-") or word == "requirements/constraints.txt":
                    continue
                match = _PIN.match(word)
                name = re.sub(r"[-_.]+", "-", (match.group(1) if match else word).lower())
                name = name.split("[")[0]
                if match:
                    base_name = name.removesuffix("-gpu")
                    if base_name in pins and pins[base_name] != match.group(2):
                        problems.append(f"{word}: constraints.txt pins {pins[base_name]}")
                elif name not in pins and not word.startswith("."):
                    problems.append(f"'{word}' is neither pinned nor in constraints.txt (DL3013)")
    if not any(c == "ARG" and a.split("=")[0] == "VERSION" for c, a in instrs):
        problems.append("no ARG VERSION")
    labels = " ".join(a for c, a in instrs if c == "LABEL")
    for label in REQUIRED_LABELS:
        if f"{label}=" not in labels:
            problems.append(f"missing LABEL {label}")
    if 'org.opencontainers.image.version="${VERSION}"' not in labels:
        problems.append("LABEL org.opencontainers.image.version must be ${VERSION}")
    envs = " ".join(a for c, a in instrs if c == "ENV")
    if not re.search(r"\bPYTHONUNBUFFERED=1\b", envs):
        problems.append("ENV PYTHONUNBUFFERED=1 missing")
    if re.search(r":latest\b", text):
        problems.append("a 'latest' tag is referenced")
    return problems


@pytest.mark.parametrize("name", sorted(platform.IMAGES))
def test_dockerfile_follows_the_rules(name: str) -> None:
    assert dockerfile_problems((IMAGES_DIR / name / "Dockerfile").read_text()) == []


def test_one_image_directory_per_platform_image() -> None:
    on_disk = {p.parent.name for p in IMAGES_DIR.glob("*/Dockerfile")}
    assert on_disk == set(platform.IMAGES)


def test_paddle_versions_match_constraints() -> None:
    paddle = constraints()["paddlepaddle"]
    for name in platform.IMAGES:
        instrs = instructions((IMAGES_DIR / name / "Dockerfile").read_text())
        assert arg_defaults(instrs).get("PADDLE_VERSION") == paddle, name
        runs = " ".join(a for c, a in instrs if c == "RUN")
        package = "paddlepaddle" if name == "cpu" else "paddlepaddle-gpu"
        assert f'"{package}==${{PADDLE_VERSION}}"' in runs, name


def test_gpu_images_target_their_pools() -> None:
    train = (IMAGES_DIR / "gpu-train" / "Dockerfile").read_text()
    infer = (IMAGES_DIR / "gpu-infer" / "Dockerfile").read_text()
    for text in (train, infer):
        assert re.search(r"^FROM nvidia/cuda:11\.\d+\.\d+-cudnn8-runtime-\S+$", text, re.M)
    assert "NCCL" in train and "V100" in train
    assert re.search(r"^ARG TENSORRT_VERSION=8\.\d", infer, re.M) and "T4" in infer
    assert '"libnvinfer8=${TENSORRT_VERSION}"' in infer


def test_dockerignore_keeps_local_state_and_credentials_out() -> None:
    patterns = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = [p for p in DOCKERIGNORED if p not in patterns]
    assert missing == []
    assert not any(p.startswith("!") for p in patterns), "no re-includes"


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("FROM python:latest\n", "not pinned"),
        ("FROM python:3.11-slim\nUSER root\n", "numeric, non-zero uid"),
        ("FROM python:3.11-slim\nUSER 0\n", "numeric, non-zero uid"),
        ("FROM python:3.11-slim\nENV AWS_SECRET_ACCESS_KEY=abc\nUSER 1000\n", "credentials"),
        (
            "FROM python:3.11-slim\nRUN pip install -c requirements/constraints.txt kfp\n",
            "no-cache-dir",
        ),
        (
            "FROM python:3.11-slim\nRUN pip install --no-cache-dir -c requirements/constraints.txt"
            " paddlepaddle==2.5.0\nUSER 1000\n",
            "constraints.txt pins",
        ),
        ("FROM python:3.11-slim\nRUN pip install --no-cache-dir requests\nUSER 1000\n", "DL3013"),
        ("FROM python:3.11-slim\nUSER 1000\n", "ARG VERSION"),
    ],
)
def test_rules_catch_broken_dockerfiles(broken: str, expected: str) -> None:
    problems = dockerfile_problems(broken)
    assert any(expected in p for p in problems), problems


def test_images_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        message = "shellcheck is not installed (apt-get install -y shellcheck)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        [shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


def _fake_docker(tmp_path: Path, info_rc: int) -> tuple[Path, Path]:
    log = tmp_path / "docker.log"
    fake = tmp_path / "docker"
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> "{log}"\nif [ "$1" = info ]; then exit {info_rc}; fi\nexit 0\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake, log


def _run_script(fake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER": str(fake), "PYTHON": shutil.which("python") or "python3"}
    env.pop("IMAGE_REGISTRY", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, check=False
    )


@pytest.mark.integration
def test_images_script_without_engine_exits_3(tmp_path: Path) -> None:
    fake, log = _fake_docker(tmp_path, info_rc=1)
    proc = _run_script(fake)
    assert proc.returncode == EXIT_NO_ENGINE, proc.stderr
    assert NO_ENGINE_MESSAGE in proc.stderr
    assert "build" not in log.read_text()


@pytest.mark.integration
def test_images_script_builds_platform_tags(tmp_path: Path) -> None:
    fake, log = _fake_docker(tmp_path, info_rc=0)
    proc = _run_script(fake, "--push")
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    for name, ref in platform.IMAGES.items():
        build = next(c for c in calls if c.startswith("build") and f"images/{name}/Dockerfile" in c)
        assert f"--tag {ref}" in build
        assert f"--build-arg VERSION={__version__}" in build
        assert f"push {ref}" in calls


@pytest.mark.integration
def test_images_script_rejects_unknown_image(tmp_path: Path) -> None:
    fake, _ = _fake_docker(tmp_path, info_rc=0)
    assert _run_script(fake, "no-such-image").returncode == 2
