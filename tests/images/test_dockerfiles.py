"""Dockerfile rules (hadolint-equivalent, as tests), the image specs and locks, the build scripts.

No Docker engine is needed: the two Dockerfiles are parsed as text (``dockerfile_problems`` is
also run on broken text to prove it fails), locks are checked against constraints.txt, the build
context is assembled from a stand-in wheelhouse, and the scripts run against fake ``docker``
commands. The built images are tested in test_built_images.py.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from images import build, lock, wheelhouse
from images.spec import (
    CUDA_BASE_IMAGE,
    DEBIAN_BASE_IMAGE,
    IMAGE_UID,
    TENSORRT_DEB_VERSION,
    TENSORRT_VERSION,
    constraints,
    image_specs,
    normalise,
    source_digest,
)
from ppminilm.cluster import doctor, platform

REPO = Path(__file__).resolve().parents[2]
IMAGES_DIR = REPO / "images"
PYTHON_LAYER = IMAGES_DIR / "Dockerfile"
RUNTIME_LAYER = IMAGES_DIR / "runtime" / "Dockerfile"
SCRIPTS = ("scripts/images.sh", "scripts/dockerd.sh", "scripts/debian-base.sh",
           "images/runtime/setup.sh", "images/runtime/entrypoint.sh")  # fmt: skip
EXIT_USAGE = 2
EXIT_NO_ENGINE = 3
#: OCI labels every image carries.
REQUIRED_LABELS = (
    "org.opencontainers.image.title",
    "org.opencontainers.image.description",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.licenses",
    "io.ppminilm.source-digest",
)
_CREDENTIAL_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|CREDENTIAL|AWS_", re.I)
#: The one FROM that may name an unversioned, locally built image: the runtime layer.
LOCAL_RUNTIME_ARG = "RUNTIME_IMAGE"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
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


def _pinned(ref: str) -> bool:
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    return "@sha256:" in ref or (bool(tag) and tag != "latest" and bool(re.search(r"\d", tag)))


def dockerfile_problems(text: str) -> list[str]:
    """Every rule, applied to one Dockerfile's text; an empty list means it passes."""
    instrs = instructions(text)
    args = arg_defaults(instrs)
    problems: list[str] = []
    cmds = [c for c, _ in instrs]
    froms = [a.split()[0] for c, a in instrs if c == "FROM"]
    stages = {a.split()[-1] for c, a in instrs if c == "FROM" and " AS " in a.upper()}
    if not froms:
        problems.append("no FROM")
    for base in froms:
        if base in stages or base == f"${{{LOCAL_RUNTIME_ARG}}}":
            continue
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        if not _pinned(ref):
            problems.append(
                f"FROM {base}: base image not pinned to a versioned tag (DL3006/DL3007)"
            )
    users = [a for c, a in instrs if c == "USER"]
    if not users:
        problems.append("no USER: the image runs as root (DL3002)")
    else:
        user = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), users[-1])
        if not re.fullmatch(r"[1-9]\d*(:\d+)?", user):
            problems.append(f"USER {users[-1]}: expected a numeric, non-zero uid")
        last_user = max(i for i, c in enumerate(cmds) if c == "USER")
        if "RUN" in cmds[last_user:]:
            problems.append("RUN after the final USER")
    for cmd, body in instrs:
        if cmd in ("ENV", "ARG"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", " " + body) or [body.split("=")[0]]:
                if _CREDENTIAL_NAME.search(name):
                    problems.append(f"{cmd} {name}: credentials must not be baked into images")
        if cmd == "ADD":
            problems.append("ADD: use COPY (DL3020)")
        if cmd == "COPY" and re.search(r"\.env\b|credentials", body):
            problems.append(f"COPY {body}: copies credentials into the image")
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
        if re.search(r"\b(curl|wget)\b", body):
            problems.append("downloads in RUN: everything comes from the wheelhouse or apt")
        if "apt-get install" in body:
            problems.append("apt-get in a Dockerfile: system packages go through setup.sh")
        for pip in re.findall(r"pip3? install[^&;]*", body):
            for flag in ("--no-cache-dir", "--no-index", "--require-hashes"):
                if flag not in pip:
                    problems.append(f"'{pip.strip()}': missing {flag}")
    labels = " ".join(a for c, a in instrs if c == "LABEL")
    if labels and 'org.opencontainers.image.version="${VERSION}"' not in labels:
        problems.append("LABEL org.opencontainers.image.version must be ${VERSION}")
    if re.search(r":latest\b", text):
        problems.append("a 'latest' tag is referenced")
    return problems


@pytest.mark.parametrize("path", [PYTHON_LAYER, RUNTIME_LAYER], ids=["python-layer", "runtime"])
def test_dockerfile_follows_the_rules(path: Path) -> None:
    assert dockerfile_problems(path.read_text()) == []


def test_python_layer_labels_targets_and_user() -> None:
    instrs = instructions(PYTHON_LAYER.read_text())
    labels = " ".join(a for c, a in instrs if c == "LABEL")
    for label in REQUIRED_LABELS:
        assert f"{label}=" in labels, label
    stages = [a.split()[-1] for c, a in instrs if c == "FROM"]
    assert stages == ["dependencies", "without-links", "image"]  # `image` is the default target
    assert [a for c, a in instrs if c == "USER"][-1] == str(IMAGE_UID)
    runs = " ".join(a for c, a in instrs if c == "RUN")
    assert "ppminilm doctor --make-links" in runs and "&& ldconfig" in runs
    assert runs.index("--make-links") < runs.index("&& ppminilm doctor")


def test_runtime_layer_env_and_official_base() -> None:
    instrs = instructions(RUNTIME_LAYER.read_text())
    envs = " ".join(a for c, a in instrs if c == "ENV")
    for var in ("PYTHONUNBUFFERED=1", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "HOME=/home/ppminilm"):
        assert var in envs
    assert arg_defaults(instrs)["BASE_IMAGE"] == DEBIAN_BASE_IMAGE
    assert arg_defaults(instrs)["IMAGE_UID"] == str(IMAGE_UID)
    for ref in (DEBIAN_BASE_IMAGE, CUDA_BASE_IMAGE):
        assert _pinned(ref), ref


def test_setup_script_installs_only_what_is_missing_and_cleans_up() -> None:
    text = (IMAGES_DIR / "runtime" / "setup.sh").read_text()
    assert "apt-get install -y --no-install-recommends" in text
    assert "rm -rf /var/lib/apt/lists/*" in text
    assert "dpkg-query" in text and "apt-mark hold" in text
    assert "--gid 0" in text and "chmod 2775" in text
    assert (IMAGES_DIR / "runtime" / "entrypoint.sh").read_text().count("umask 0002") == 1


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("FROM python:latest\n", "not pinned"),
        ("FROM python:3.11-slim\nUSER root\n", "numeric, non-zero uid"),
        ("FROM python:3.11-slim\nUSER 0\n", "numeric, non-zero uid"),
        ("FROM python:3.11-slim\nENV AWS_SECRET_ACCESS_KEY=abc\nUSER 1000\n", "credentials"),
        (
            "FROM python:3.11-slim\nRUN pip install --no-index --require-hashes kfp\n",
            "no-cache-dir",
        ),
        ("FROM python:3.11-slim\nRUN pip install --no-cache-dir -r r.txt\nUSER 1\n", "--no-index"),
        ("FROM python:3.11-slim\nRUN apt-get install -y curl\nUSER 1\n", "setup.sh"),
        ("FROM python:3.11-slim\nUSER 1000\nRUN true\n", "RUN after the final USER"),
        ("FROM python:3.11-slim\nADD https://x/y.tgz /\nUSER 1\n", "ADD"),
        ("FROM python:3.11-slim\nUSER 1\nCMD ppminilm --help\n", "exec (JSON) form"),
    ],
)
def test_rules_catch_broken_dockerfiles(broken: str, expected: str) -> None:
    problems = dockerfile_problems(broken)
    assert any(expected in p for p in problems), problems


# ----------------------------------------------------------------------------- specs and locks


def test_one_spec_and_lock_per_platform_image() -> None:
    specs = image_specs()
    assert set(specs) == set(platform.IMAGES)
    for name, spec in specs.items():
        assert spec.tag == platform.IMAGES[name]
        assert spec.lock_path.is_file(), spec.lock_path
        assert spec.doctor_profile in doctor.PROFILES


@pytest.mark.parametrize("name", sorted(platform.IMAGES))
def test_lock_agrees_with_constraints(name: str) -> None:
    spec = image_specs()[name]
    assert lock.lock_problems(spec) == []
    pins = {normalise(p.name): p for p in lock.read_lock(spec.lock_path)}
    paddle = "paddlepaddle" if name == "cpu" else "paddlepaddle-gpu"
    assert pins[paddle].version == constraints()["paddlepaddle"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", p.sha256) for p in pins.values())
    assert "ppminilm-kfp" not in pins
    # The PaddleJob launcher (kubeflow-training) runs in the CPU and the training image.
    assert ("kubeflow-training" in pins) == (name in ("cpu", "gpu-train"))


def test_gpu_images_load_what_paddle_was_built_for() -> None:
    train = {
        normalise(p.name): p.version for p in lock.read_lock(image_specs()["gpu-train"].lock_path)
    }
    assert train["nvidia-cudnn-cu11"].startswith("8.6.")  # paddlepaddle-gpu 2.6.2: cuDNN 8.6
    assert train["nvidia-cublas-cu11"].startswith("11.11.")  # CUDA 11.8's cuBLAS
    assert "nvidia-nccl-cu11" in train
    infer = image_specs()["gpu-infer"].runtime
    assert infer.base_image == CUDA_BASE_IMAGE and not infer.debian_fallback
    assert f"libnvinfer8={TENSORRT_DEB_VERSION}" in infer.system_packages
    assert f"libnvinfer-plugin8={TENSORRT_DEB_VERSION}" in infer.system_packages
    major, minor, _ = TENSORRT_VERSION.split(".")
    assert (int(major), int(minor)) == doctor.TENSORRT_COMPILE_VERSION


def test_lock_reader_rejects_entries_without_hash(tmp_path: Path) -> None:
    bad = tmp_path / "requirements.lock"
    bad.write_text("# x-1.0-py3-none-any.whl\nx==1.0\n")
    with pytest.raises(ValueError, match=r"requirements\.lock:2: expected"):
        lock.read_lock(bad)


def test_source_digest_follows_the_package_sources(tmp_path: Path, monkeypatch) -> None:
    spec = image_specs()["cpu"]
    before = source_digest(spec)
    assert before == source_digest(spec)
    import images.spec as spec_module

    fake_repo = tmp_path / "repo"
    shutil.copytree(REPO / "src", fake_repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(IMAGES_DIR, fake_repo / "images", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", fake_repo / "pyproject.toml")
    monkeypatch.setattr(spec_module, "REPO", fake_repo)
    monkeypatch.setattr(spec_module, "IMAGES_DIR", fake_repo / "images")
    moved = spec_module.ImageSpec(**{**vars(spec)})
    assert source_digest(moved) == before  # the same content elsewhere: the same digest
    (fake_repo / "src/ppminilm/cluster/platform.py").write_text("# changed\n", encoding="utf-8")
    assert source_digest(moved) != before


# ----------------------------------------------------------------------------- build context


@pytest.mark.integration
def test_context_holds_only_wheels_project_and_dockerfile(tmp_path: Path) -> None:
    house = tmp_path / "house"
    (house / "wheels").mkdir(parents=True)
    wheel = house / "wheels" / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    (house / wheelhouse.REQUIREMENTS).write_text(
        f"# {wheel.name}\ndemo==1.0 \\\n    --hash=sha256:{wheelhouse.sha256_file(wheel)}\n"
    )
    ctx = build.make_context(image_specs()["cpu"], house, build_root=tmp_path / "ctx")
    files = sorted(p.relative_to(ctx).as_posix() for p in ctx.rglob("*") if p.is_file())
    project_wheel = next(f for f in files if f.startswith("project/ppminilm_kfp-"))
    assert files == sorted([
        "Dockerfile", "project/requirements.txt", "project/sbom.py", project_wheel,
        "wheels/demo-1.0-py3-none-any.whl", "wheels/requirements.txt",
    ])  # fmt: skip
    assert wheelhouse.verify(house) == []
    pinned = (ctx / "project/requirements.txt").read_text()
    assert wheelhouse.sha256_file(ctx / project_wheel) in pinned
    wheel.write_bytes(b"changed")
    assert wheelhouse.verify(house) == [f"{wheel} does not match its hash"]


# ----------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_pass_shellcheck(script: str) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        message = "shellcheck is not installed (apt-get install -y shellcheck)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    proc = subprocess.run(
        [shellcheck, "--severity=style", str(REPO / script)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout


def _fake_docker(tmp_path: Path, version_rc: int) -> Path:
    log = tmp_path / "docker.log"
    fake = tmp_path / "docker"
    script = f'echo "$*" >> "{log}"\nif [ "$1" = version ]; then exit {version_rc}; fi\nexit 0\n'
    fake.write_text("#!/bin/sh\n" + script)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return fake


def _run_images_sh(fake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER": str(fake), "PPMINILM_DOCKERD_AUTOSTART": "0",
           "PPMINILM_DOCKERD_RUN": str(fake.parent / "run")}  # fmt: skip
    env.pop("DOCKER_HOST", None)
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "images.sh"), *args], capture_output=True, text=True,
        env=env, check=False,
    )  # fmt: skip


@pytest.mark.integration
def test_images_script_without_engine_exits_3_and_builds_nothing(tmp_path: Path) -> None:
    fake = _fake_docker(tmp_path, version_rc=1)
    proc = _run_images_sh(fake)
    assert proc.returncode == EXIT_NO_ENGINE, proc.stderr
    assert "no Docker engine answers" in proc.stderr
    assert "build" not in (tmp_path / "docker.log").read_text()


@pytest.mark.integration
def test_images_script_rejects_unknown_image(tmp_path: Path) -> None:
    fake = _fake_docker(tmp_path, version_rc=0)
    proc = _run_images_sh(fake, "no-such-image")
    assert proc.returncode == EXIT_USAGE
    assert "unknown image(s) ['no-such-image']" in proc.stderr


@pytest.mark.integration
def test_dockerd_script_usage_and_status(tmp_path: Path) -> None:
    script = str(REPO / "scripts" / "dockerd.sh")
    env = {**os.environ, "PPMINILM_DOCKERD_RUN": str(tmp_path / "run")}
    assert subprocess.run(["bash", script], capture_output=True, env=env).returncode == EXIT_USAGE
    # no daemon behind a fresh runtime directory
    assert subprocess.run(["bash", script, "status"], capture_output=True, env=env).returncode != 0
