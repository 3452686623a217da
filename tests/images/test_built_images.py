"""The built images, run: CLI, user, the paddle traps, the library check, secrets, SBOM.

Needs a Docker engine and the images from ``make images`` built from this working tree (the
``io.ppminilm.source-digest`` label). Without them the tests skip, except under CI, where a
missing engine or a stale image is a failure. gpu-train is not built in CI (see README): its
tests run where ``make images`` built it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from images import secrets
from images.build import WITHOUT_LINKS
from images.spec import IMAGE_UID, image_specs, source_digest
from ppminilm import __version__
from ppminilm.errors import EXIT_DEVICE

#: Every test here starts containers (not in make test-fast).
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPECS = image_specs()


def _engine_env() -> dict[str, str] | None:
    host = subprocess.run(
        ["bash", str(REPO / "scripts" / "dockerd.sh"), "host"], capture_output=True, text=True
    ).stdout.strip()
    if not host:
        return None
    return {**os.environ, "DOCKER_HOST": host}


def _unavailable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    env = _engine_env()
    if env is None:
        _unavailable("no Docker engine answers (scripts/dockerd.sh start, then make images)")
    return env


def docker(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def _built(env: dict[str, str], name: str, required: bool) -> str:
    spec = SPECS[name]
    proc = docker(env, "image", "inspect", "-f", "{{json .Config.Labels}}", spec.tag)
    if proc.returncode != 0:
        message = f"{spec.tag} is not built (make images)"
        if required:
            _unavailable(message)
        pytest.skip(message)
    labels = json.loads(proc.stdout) or {}
    if labels.get("io.ppminilm.source-digest") != source_digest(spec):
        message = f"{spec.tag} is stale: built from other sources (make images)"
        if required:
            _unavailable(message)
        pytest.skip(message)
    return spec.tag


@pytest.fixture(scope="module")
def cpu_image(engine) -> str:
    return _built(engine, "cpu", required=True)


def run(env, image: str, *cmd: str, user: str = "", timeout: int = 300):
    extra = ["--user", user] if user else []
    return docker(env, "run", "--rm", "--network", "none", *extra, image, *cmd, timeout=timeout)


def test_help_runs_as_the_non_root_user(engine, cpu_image: str) -> None:
    proc = run(engine, cpu_image, "ppminilm", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "distil" in proc.stdout
    ident = run(engine, cpu_image, "sh", "-c", "id -u; id -g; echo $HOME; umask; touch $HOME/w")
    assert ident.returncode == 0, ident.stderr
    assert ident.stdout.split() == [str(IMAGE_UID), "0", "/home/ppminilm", "0002"]
    user = docker(engine, "image", "inspect", "-f", "{{.Config.User}}", cpu_image).stdout.strip()
    assert user == str(IMAGE_UID)


def test_labels_carry_version_revision_and_digest(engine, cpu_image: str) -> None:
    labels = json.loads(
        docker(engine, "image", "inspect", "-f", "{{json .Config.Labels}}", cpu_image).stdout
    )
    assert labels["org.opencontainers.image.version"] == __version__
    assert len(labels["org.opencontainers.image.revision"].split("-")[0]) == 40
    assert labels["io.ppminilm.image"] == "cpu"


def test_zlib_trap_is_handled_in_the_image(engine, cpu_image: str) -> None:
    png = (
        "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt, io;"
        " plt.plot([1, 2]); plt.savefig(io.BytesIO(), format='png'); print('ok')"
    )
    safe = run(
        engine, cpu_image, "python", "-c", f"import ppminilm.compat.paddle, gzip, zlib; {png}"
    )
    assert safe.returncode == 0 and safe.stdout.strip().endswith("ok"), safe.stderr[-2000:]
    assert "not a writable directory" not in safe.stderr  # HOME caches belong to the user
    builtin = run(
        engine, cpu_image, "python", "-c", "import sys; print('zlib' in sys.builtin_module_names)"
    )
    naive = run(engine, cpu_image, "python", "-c", f"import paddle; {png}")
    if builtin.stdout.strip() == "True":
        # Debian's python3.11 (the local base) has zlib built in, loaded before paddle can
        # shadow it: the naive order works there. The official python image loads zlib as an
        # extension module, where the naive order crashes and the guard is what makes it work.
        assert naive.returncode == 0, naive.stderr[-2000:]
    else:
        assert naive.returncode != 0


def test_home_belongs_to_the_image_user(engine, cpu_image: str) -> None:
    proc = run(engine, cpu_image, "sh", "-c", f"find $HOME ! -user {IMAGE_UID}")
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout


def test_onednn_int8_kernels_run_in_the_image(engine, cpu_image: str, tmp_path: Path) -> None:
    # Quantize a tiny random model in the image and check that oneDNN runs it as INT8.
    script = REPO / "tests" / "images" / "int8_probe.py"
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o777)
    proc = docker(
        engine, "run", "--rm", "--network", "none", "-v", f"{script}:/probe.py:ro",
        "-v", f"{work}:/work", cpu_image, "python", "/probe.py", "/work", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["quantized_model"] and result["runs_int8"] and result["int8_ops"] > 0


def test_library_check_passes_in_the_cpu_image(engine, cpu_image: str) -> None:
    proc = run(engine, cpu_image, "ppminilm", "doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "profile cpu" in proc.stdout and "paddle shared objects resolve" in proc.stdout


def test_no_credentials_in_any_layer_or_the_history(engine, cpu_image: str) -> None:
    assert secrets.scan_image(cpu_image, env=engine) == []


def test_secret_scanner_finds_planted_secrets() -> None:  # no engine needed
    # The scanner on a layer that has what must never ship: it must report each.
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in (
            ("home/ppminilm/.aws/credentials", b"[default]\n"),
            ("opt/app/key.pem", b"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n"),
            ("etc/ssl/certs/ca.pem", b"-----BEGIN CERTIFICATE-----\n"),
            ("opt/venv/lib/python3.11/site-packages/x/.env", b"TOKEN=1\n"),
            (
                "opt/venv/lib/python3.11/site-packages/x/test_key.pem",
                b"-----BEGIN PRIVATE KEY-----\n",
            ),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer.seek(0)
    findings = secrets.scan_layer(layer, "layer")
    assert findings == [
        "layer: credential file home/ppminilm/.aws/credentials",
        "layer: secret material in opt/app/key.pem",
        "layer: credential file opt/venv/lib/python3.11/site-packages/x/.env",
    ]
    assert secrets.scan_history(["ENV AWS_SECRET_ACCESS_KEY=abc123", "ENV LANG=C.UTF-8"]) == [
        "history: AWS_SECRET_ACCESS_KEY=abc123"
    ]


def test_sbom_lists_python_and_debian_packages(engine, cpu_image: str) -> None:
    proc = run(engine, cpu_image, "cat", "/opt/ppminilm/sbom.cdx.json")
    assert proc.returncode == 0, proc.stderr
    sbom = json.loads(proc.stdout)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
    purls = {c["purl"] for c in sbom["components"]}
    assert "pkg:pypi/paddlepaddle@2.6.2" in purls
    assert f"pkg:pypi/ppminilm-kfp@{__version__}" in purls
    assert any(p.startswith("pkg:deb/debian/libc6@") for p in purls)
    assert sbom["metadata"]["component"]["name"] == "ppminilm-cpu"


def test_gpu_train_library_check_passes_and_fails_without_links(engine) -> None:
    image = _built(engine, "gpu-train", required=False)
    ok = run(engine, image, "ppminilm", "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    linked = r"ok +libcudnn.so \(cuDNN\): (/usr)?/lib/x86_64-linux-gnu/libcudnn.so -> "
    assert re.search(linked, ok.stdout), ok.stdout
    bare = run(engine, image + WITHOUT_LINKS, "ppminilm", "doctor")
    assert bare.returncode == EXIT_DEVICE, bare.stdout + bare.stderr
    assert "MISSING libcudnn.so (cuDNN): not found" in bare.stdout
    assert "missing or broken: libcudnn.so, libcublas.so" in bare.stderr
    launcher = run(engine, image, "python", "-c", "import kubeflow.training; print('ok')")
    assert launcher.returncode == 0, launcher.stderr
