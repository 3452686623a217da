"""``ppminilm doctor`` on fake root file systems: GPU images with and without the links.

The fake roots hold ELF shared objects written here (header, one PT_LOAD, PT_DYNAMIC with
DT_NEEDED / DT_SONAME / DT_RUNPATH), laid out as NVIDIA's PyPI wheels (gpu-train) and as the
CUDA runtime image + libnvinfer8 debs (gpu-infer) lay them out. The ELF reader itself is checked
against ``readelf`` on a real system library.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ppminilm.cli import main
from ppminilm.cluster import doctor
from ppminilm.cluster.elf import read_elf
from ppminilm.errors import EXIT_DEVICE

SITE = "opt/venv/lib/python3.11/site-packages"
MULTIARCH = "usr/lib/x86_64-linux-gnu"


def write_so(path: Path, soname: str = "", needed: tuple[str, ...] = (),
             runpath: tuple[str, ...] = (), elf_class: int = 2) -> Path:  # fmt: skip
    """Write a minimal 64-bit (or 32-bit-marked) x86-64 ELF shared object."""
    strtab = bytearray(b"\0")

    def add(text: str) -> int:
        offset = len(strtab)
        strtab.extend(text.encode() + b"\0")
        return offset

    dyn = [(1, add(n)) for n in needed]
    if soname:
        dyn.append((14, add(soname)))
    if runpath:
        dyn.append((29, add(":".join(runpath))))
    strtab_off = 64 + 2 * 56
    dyn_off = (strtab_off + len(strtab) + 7) // 8 * 8
    dyn += [(5, strtab_off), (0, 0)]
    dyn_bytes = b"".join(struct.pack("<qQ", t, v) for t, v in dyn)
    total = dyn_off + len(dyn_bytes)
    ident = b"\x7fELF" + bytes([elf_class, 1, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 56, 2, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)
    dynamic = struct.pack(
        "<IIQQQQQQ", 2, 6, dyn_off, dyn_off, dyn_off, len(dyn_bytes), len(dyn_bytes), 8
    )
    body = ehdr + load + dynamic + bytes(strtab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body + b"\0" * (dyn_off - len(body)) + dyn_bytes)
    return path


def _base_root(root: Path) -> Path:
    """System libraries, ld.so.conf and a GPU paddle build (its own libraries bundled)."""
    (root / "etc/ld.so.conf.d").mkdir(parents=True)
    (root / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n")
    (root / "etc/ld.so.conf.d/libc.conf").write_text("/usr/local/lib\n")
    for lib in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libz.so.1"):
        write_so(root / MULTIARCH / lib, soname=lib)
    paddle = root / SITE / "paddle"
    (paddle / "version").mkdir(parents=True)
    (paddle / "version/__init__.py").write_text(
        "full_version     = '2.6.2'\ncuda_version     = '11.8'\ncudnn_version    = '8.6.0'\n"
    )
    write_so(paddle / "base/libpaddle.so", "libpaddle.so", ("libphi.so", "libz.so.1", "libc.so.6"),
             ("$ORIGIN/../libs/",))  # fmt: skip
    write_so(
        paddle / "libs/libphi.so", "libphi.so", ("libiomp5.so", "libstdc++.so.6"), ("$ORIGIN",)
    )
    write_so(paddle / "libs/libiomp5.so", "libiomp5.so", ("libc.so.6",))
    # Loaded by paddle after libiomp5 (no RUNPATH of its own): counts as resolved.
    write_so(paddle / "libs/libmklml_intel.so", "libmklml_intel.so", ("libiomp5.so",))
    return root


WHEEL_LIBS = {
    "cudnn": ["libcudnn.so.8", *(f"libcudnn_{p}_{k}.so.8" for p in ("ops", "cnn", "adv")
                                 for k in ("infer", "train"))],
    "cublas": ["libcublas.so.11", "libcublasLt.so.11"],
    "curand": ["libcurand.so.10"],
    "cusolver": ["libcusolver.so.11"],
    "cusparse": ["libcusparse.so.11"],
    "cufft": ["libcufft.so.10"],
    "nccl": ["libnccl.so.2"],
    "cuda_nvrtc": ["libnvrtc.so.11.2"],
    "cuda_cupti": ["libcupti.so.11.8"],
}  # fmt: skip


@pytest.fixture
def train_root(tmp_path: Path) -> Path:
    """gpu-train as pip lays it out: NVIDIA wheels, versioned names only, RUNPATH $ORIGIN."""
    root = _base_root(tmp_path / "root")
    for package, libs in WHEEL_LIBS.items():
        for lib in libs:
            needed = (
                ("libcublasLt.so.11", "libc.so.6") if lib == "libcublas.so.11" else ("libc.so.6",)
            )
            write_so(root / SITE / "nvidia" / package / "lib" / lib, lib, needed, ("$ORIGIN",))
    return root


@pytest.fixture
def infer_root(tmp_path: Path) -> Path:
    """gpu-infer as the CUDA runtime image + libnvinfer8 debs lay it out."""
    root = _base_root(tmp_path / "root")
    cuda = root / "usr/local/cuda-11.8/targets/x86_64-linux/lib"
    for lib in ("libcublas.so.11.11.3.6", "libcublasLt.so.11.11.3.6", "libcurand.so.10.3.0.86",
                "libcusolver.so.11.4.1.48", "libcusparse.so.11.7.5.86", "libcufft.so.10.9.0.58",
                "libnvrtc.so.11.8.89", "libcupti.so.11.8.87"):  # fmt: skip
        soname = lib.split(".so.")[0] + ".so." + lib.split(".so.")[1].split(".")[0]
        write_so(cuda / lib, soname, ("libc.so.6",))
        (cuda / soname).symlink_to(lib)
    (root / "etc/ld.so.conf.d/000_cuda.conf").write_text(
        "/usr/local/cuda-11.8/targets/x86_64-linux/lib\n"
    )
    multi = root / MULTIARCH
    for name, full in (
        ("libcudnn", "8.6.0"),
        ("libnvinfer", "8.5.3"),
        ("libnvinfer_plugin", "8.5.3"),
    ):
        major = full.split(".")[0]
        write_so(multi / f"{name}.so.{full}", f"{name}.so.{major}", ("libc.so.6",))
        (multi / f"{name}.so.{major}").symlink_to(f"{name}.so.{full}")
    for part in ("ops", "cnn", "adv"):
        for kind in ("infer", "train"):
            write_so(multi / f"libcudnn_{part}_{kind}.so.8", f"libcudnn_{part}_{kind}.so.8")
    write_so(multi / "libnvinfer_builder_resource.so.8.5.3", "libnvinfer_builder_resource.so.8.5.3")
    return root


def _failed(report: doctor.Report) -> set[str]:
    return {c.name for c in report.failures}


def test_elf_reader_agrees_with_readelf() -> None:
    readelf = shutil.which("readelf")
    libz = next(Path("/").glob("usr/lib/x86_64-linux-gnu/libz.so.1*"), None) or next(
        Path("/").glob("lib/x86_64-linux-gnu/libz.so.1*")
    )
    info = read_elf(libz.resolve())
    assert info.soname == "libz.so.1" and "libc.so.6" in info.needed
    assert info.is_x86_64_shared_object
    if readelf:
        out = subprocess.run([readelf, "-d", str(libz)], capture_output=True, text=True).stdout
        listed = [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
        assert list(info.needed) == listed


def test_gpu_train_without_links_fails_naming_each_missing_library(train_root: Path) -> None:
    report = doctor.check("gpu-train", train_root)
    assert not report.ok
    required = {lib.name for lib in doctor.PROFILES["gpu-train"] if lib.required}
    assert _failed(report) == required
    assert "libcudnn.so" in required and "libnccl.so" in required and "libcuda.so.1" not in required
    # paddle's own shared objects resolve (libmklml_intel.so's libiomp5.so is already loaded)
    assert any(c.name == "paddle" and c.ok for c in report.checks)


def test_make_links_cli_only_links(train_root: Path, capsys) -> None:
    # The image build runs `doctor --make-links`, then ldconfig, then the check: linking alone
    # must not fail on what only ldconfig can make resolvable.
    rc = main(["doctor", "--profile", "gpu-train", "--root", str(train_root), "--make-links"])
    assert rc == 0
    assert (train_root / MULTIARCH / "libnccl.so").is_symlink()
    assert capsys.readouterr().out == ""
    assert main(["doctor", "--profile", "gpu-train", "--root", str(train_root)]) == 0


def test_make_links_makes_gpu_train_pass(train_root: Path, capsys) -> None:
    created = doctor.make_links("gpu-train", train_root)
    assert any(
        line.startswith(f"/{MULTIARCH}/libcudnn.so -> /{SITE}/nvidia/cudnn/lib/")
        for line in created
    )
    # absolute link targets inside the image, re-rooted when checked from outside
    assert os.readlink(train_root / MULTIARCH / "libcublas.so").startswith("/opt/venv/")
    conf = (train_root / "etc/ld.so.conf.d/ppminilm-links.conf").read_text()
    assert f"/{SITE}/nvidia/cublas/lib" in conf
    report = doctor.check("gpu-train", train_root)
    assert report.ok, doctor.format_report(report)
    rc = main(["doctor", "--profile", "gpu-train", "--root", str(train_root)])
    assert rc == 0
    assert "libcudnn.so (cuDNN)" in capsys.readouterr().out


def test_cli_exit_code_names_the_missing_library(train_root: Path, capsys) -> None:
    doctor.make_links("gpu-train", train_root)
    (train_root / MULTIARCH / "libcudnn.so").unlink()
    rc = main(["doctor", "--profile", "gpu-train", "--root", str(train_root)])
    assert rc == EXIT_DEVICE
    captured = capsys.readouterr()
    assert "MISSING libcudnn.so" in captured.out
    assert "missing or broken: libcudnn.so" in captured.err


def test_links_only_in_an_ld_so_conf_directory_do_not_resolve(train_root: Path) -> None:
    # ld.so.cache holds SONAMEs; a libcudnn.so link in /usr/local/lib is invisible to dlopen.
    target = f"/{SITE}/nvidia/cudnn/lib/libcudnn.so.8"
    (train_root / "usr/local/lib").mkdir(parents=True)
    (train_root / "usr/local/lib/libcudnn.so").symlink_to(target)
    assert "libcudnn.so" in _failed(doctor.check("gpu-train", train_root))
    # LD_LIBRARY_PATH is searched by name, but $ORIGIN is the directory the link was found in
    # (glibc does not follow the link): cuDNN's own sub-libraries are then not found ...
    report = doctor.check("gpu-train", train_root, ld_library_path=["/usr/local/lib"])
    detail = next(c.detail for c in report.failures if c.name == "libcudnn.so")
    assert "/usr/local/lib/libcudnn.so -> " in detail
    assert "libcudnn.so.8 needs libcudnn_ops_infer.so.8" in detail
    # ... unless their directory is searched too
    wheel_dir = f"/{SITE}/nvidia/cudnn/lib"
    report = doctor.check("gpu-train", train_root, ld_library_path=["/usr/local/lib", wheel_dir])
    assert "libcudnn.so" not in _failed(report)


def test_broken_link_wrong_class_and_missing_dependency_are_failures(train_root: Path) -> None:
    doctor.make_links("gpu-train", train_root)
    multi = train_root / MULTIARCH
    (multi / "libcurand.so").unlink()
    (multi / "libcurand.so").symlink_to("/nowhere/libcurand.so.10")
    (multi / "libcufft.so").unlink()
    write_so(multi / "libcufft.so", "libcufft.so.10", elf_class=1)  # 32-bit: skipped by ld.so
    (train_root / SITE / "nvidia/cublas/lib/libcublasLt.so.11").unlink()
    report = doctor.check("gpu-train", train_root)
    assert _failed(report) == {"libcurand.so", "libcufft.so", "libcublas.so", "libcublasLt.so"}
    detail = next(c.detail for c in report.checks if c.name == "libcublas.so")
    assert "libcublas.so.11 needs libcublasLt.so.11" in detail


def test_cudnn_major_must_match_paddles_build(train_root: Path) -> None:
    lib = train_root / SITE / "nvidia/cudnn/lib"
    os.rename(lib / "libcudnn.so.8", lib / "libcudnn.so.7")
    doctor.make_links("gpu-train", train_root)
    detail = next(
        c.detail for c in doctor.check("gpu-train", train_root).checks if c.name == "libcudnn.so"
    )
    assert "version 7 but paddle was built with cudnn 8.6.0" in detail


def test_required_library_without_any_file_cannot_be_linked(train_root: Path) -> None:
    shutil.rmtree(train_root / SITE / "nvidia/nccl")
    with pytest.raises(FileNotFoundError, match=r"libnccl\.so"):
        doctor.make_links("gpu-train", train_root)


def test_gpu_infer_needs_links_then_passes(infer_root: Path) -> None:
    before = _failed(doctor.check("gpu-infer", infer_root))
    assert {"libcudnn.so", "libcublas.so", "libnvinfer.so", "libnvinfer_plugin.so"} <= before
    created = doctor.make_links("gpu-infer", infer_root)
    assert f"/{MULTIARCH}/libnvinfer.so -> /{MULTIARCH}/libnvinfer.so.8.5.3" in created
    report = doctor.check("gpu-infer", infer_root)
    assert report.ok, doctor.format_report(report)


def test_gpu_infer_tensorrt_version_and_builder_resource(infer_root: Path) -> None:
    multi = infer_root / MULTIARCH
    (multi / "libnvinfer_builder_resource.so.8.5.3").unlink()
    (multi / "libnvinfer_plugin.so.8").unlink()
    write_so(multi / "libnvinfer_plugin.so.8.6.1", "libnvinfer_plugin.so.8")
    (multi / "libnvinfer_plugin.so.8").symlink_to("libnvinfer_plugin.so.8.6.1")
    os.remove(multi / "libnvinfer_plugin.so.8.5.3")
    doctor.make_links("gpu-infer", infer_root)
    report = doctor.check("gpu-infer", infer_root)
    details = {c.name: c.detail for c in report.failures}
    assert set(details) == {"libnvinfer.so", "libnvinfer_plugin.so"}
    assert "needs libnvinfer_builder_resource.so.8.5.3" in details["libnvinfer.so"]
    assert "version 8.6.1 but paddle was built with tensorrt 8.5" in details["libnvinfer_plugin.so"]


def test_cpu_paddle_in_a_gpu_profile_and_unknown_profile(train_root: Path) -> None:
    version = train_root / SITE / "paddle/version/__init__.py"
    version.write_text("full_version = '2.6.2'\ncuda_version = 'False'\ncudnn_version = 'False'\n")
    doctor.make_links("gpu-train", train_root)
    assert "paddle" in _failed(doctor.check("gpu-train", train_root))
    with pytest.raises(ValueError, match="unknown doctor profile 'tpu'"):
        doctor.check("tpu", train_root)


@pytest.mark.integration
def test_this_venvs_cpu_paddle_resolves_live() -> None:
    # The real loader and the real paddle wheel of this environment (dlopen on /).
    report = doctor.check("cpu")
    assert report.ok, doctor.format_report(report)
    assert report.paddle["full_version"] == "2.6.2"
    proc = subprocess.run(
        [sys.executable, "-m", "ppminilm", "doctor", "--profile", "gpu-train", "--json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == EXIT_DEVICE  # a CPU venv has no CUDA libraries
    assert '"ok": false' in proc.stdout
