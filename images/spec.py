"""What each image is made of, in one table, and the digest of the sources it is built from.

Every image is two layers of Dockerfile: ``images/runtime/Dockerfile`` (OS packages, Python venv,
non-root user, locale, entrypoint) on a base image, then ``images/Dockerfile`` (the hash-pinned
wheels and this package). The three images differ only in the data below.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ppminilm.cluster import platform

IMAGES_DIR = Path(__file__).resolve().parent
REPO = IMAGES_DIR.parent
CONSTRAINTS = REPO / "requirements" / "constraints.txt"

#: Official base image of the Debian runtime (``BASE_IMAGE`` overrides it). Where no registry
#: answers, a Debian root file system built here with debootstrap stands in for it.
DEBIAN_BASE_IMAGE = "python:3.11.10-slim-bookworm"
#: Base image of the TensorRT runtime (``CUDA_BASE_IMAGE`` overrides it): CUDA 11.8 + cuDNN 8,
#: what paddlepaddle-gpu 2.6.2 is built for, with NVIDIA's apt repository configured.
CUDA_BASE_IMAGE = "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"
#: The TensorRT paddlepaddle-gpu 2.6.2 (CUDA 11.8) is built against; compile and runtime
#: versions must be equal. Only NVIDIA's apt repository serves 8.5 (PyPI has 10.x and up).
TENSORRT_VERSION = "8.5.3"
TENSORRT_DEB_VERSION = f"{TENSORRT_VERSION}-1+cuda11.8"

#: uid of the image's user (group 0, so an arbitrary uid with gid 0 works as on OpenShift).
IMAGE_UID = platform.IMAGE_UID
#: Where the unversioned library links live in the GPU images.
LINK_DIR = "/usr/local/lib/ppminilm-links"


@dataclass(frozen=True)
class Runtime:
    """The OS layer: a base image plus system packages.

    Attributes:
        name: Short name, part of the runtime image's local tag.
        base_image: Default base image reference.
        base_env: Environment variable that overrides ``base_image``.
        system_packages: apt packages the runtime needs (``name`` or ``name=version``).
        debian_fallback: Whether a locally built Debian base may stand in for the base image.
    """

    name: str
    base_image: str
    base_env: str
    system_packages: tuple[str, ...]
    debian_fallback: bool


#: libgomp1: OpenMP runtime of paddle's CPU kernels. ca-certificates: TLS to object stores.
DEBIAN_RUNTIME = Runtime(
    name="debian",
    base_image=DEBIAN_BASE_IMAGE,
    base_env="BASE_IMAGE",
    system_packages=("libgomp1", "ca-certificates"),
    debian_fallback=True,
)
TENSORRT_RUNTIME = Runtime(
    name="cuda-tensorrt",
    base_image=CUDA_BASE_IMAGE,
    base_env="CUDA_BASE_IMAGE",
    system_packages=(
        "python3.11",
        "python3.11-venv",
        "libgomp1",
        "ca-certificates",
        f"libnvinfer8={TENSORRT_DEB_VERSION}",
        f"libnvinfer-plugin8={TENSORRT_DEB_VERSION}",
    ),
    debian_fallback=False,
)


@dataclass(frozen=True)
class ImageSpec:
    """One image.

    Attributes:
        name: Directory under ``images/`` holding its lock, and key of ``platform.IMAGES``.
        title: OCI title label.
        description: OCI description label.
        runtime: The OS layer it is built on.
        requirements: Requirement specifiers installed beside the project's ``.[kfp]``.
        doctor_profile: ``ppminilm doctor`` profile the build checks (libraries paddle dlopens).
        unavailable_here: Why it cannot be built where its base image is not pullable
            (empty: the Debian fallback covers it).
    """

    name: str
    title: str
    description: str
    runtime: Runtime
    requirements: tuple[str, ...]
    doctor_profile: str
    unavailable_here: str = ""

    @property
    def tag(self) -> str:
        """The image reference components and pipelines use (``platform.IMAGES``)."""
        return platform.IMAGES[self.name]

    @property
    def lock_path(self) -> Path:
        return IMAGES_DIR / self.name / "requirements.lock"


def constraints() -> dict[str, str]:
    """``normalised name -> version`` from requirements/constraints.txt."""
    pins: dict[str, str] = {}
    for raw in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[normalise(name)] = version.strip()
    return pins


def normalise(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _paddle_version() -> str:
    return constraints()["paddlepaddle"]


#: NVIDIA's CUDA 11 libraries paddlepaddle-gpu 2.6.2 dlopens, as PyPI wheels (pinned in
#: constraints.txt): cuDNN 8.6 (paddle's build), cuBLAS/cuRAND/cuSOLVER/cuSPARSE/cuFFT of
#: CUDA 11.8, NCCL for multi-GPU, NVRTC/CUPTI/NVTX for the JIT and the profiler.
CUDA11_WHEELS = (
    "nvidia-cudnn-cu11",
    "nvidia-cublas-cu11",
    "nvidia-curand-cu11",
    "nvidia-cusolver-cu11",
    "nvidia-cusparse-cu11",
    "nvidia-cufft-cu11",
    "nvidia-nccl-cu11",
    "nvidia-cuda-nvrtc-cu11",
    "nvidia-cuda-runtime-cu11",
    "nvidia-cuda-cupti-cu11",
    "nvidia-nvtx-cu11",
)


#: The CPU peer engines (pyproject extra ``peers``): OpenVINO + NNCF, onnxruntime + paddle2onnx
#: (onnxruntime.quantization imports ml_dtypes without declaring it).
PEERS = ("openvino", "nncf", "onnxruntime", "paddle2onnx", "ml_dtypes")

#: Installed in every image beside the project: paddleslim imports pkg_resources without
#: declaring setuptools.
COMMON = ("setuptools",)
#: The model server (pyproject extra ``serve``): the KServe SDK. The CPU image runs the
#: ``ppminilm-cpu`` ServingRuntime, the TensorRT image the ``ppminilm-t4`` one.
SERVE = ("kserve",)


def image_specs() -> dict[str, ImageSpec]:
    """Every image, by name (the keys of ``ppminilm.cluster.platform.IMAGES``)."""
    paddle = _paddle_version()
    specs = [
        ImageSpec(
            name="cpu",
            title="ppminilm-cpu",
            description=f"PP-MiniLM Kubeflow Pipelines stages, CPU (paddlepaddle {paddle})",
            runtime=DEBIAN_RUNTIME,
            # kubeflow-training: the PaddleJob launcher step may run here. PEERS: the CPU
            # engines the benchmark's engine='auto' compares (and a model server runs).
            requirements=(
                f"paddlepaddle=={paddle}",
                "kubeflow-training",
                *COMMON,
                *PEERS,
                *SERVE,
            ),
            doctor_profile="cpu",
        ),
        ImageSpec(
            name="gpu-train",
            title="ppminilm-gpu-train",
            description=(
                f"PP-MiniLM distillation and fine-tuning on V100 (paddlepaddle-gpu {paddle},"
                " CUDA 11.8, cuDNN 8.6 and NCCL from NVIDIA's PyPI wheels)"
            ),
            runtime=DEBIAN_RUNTIME,
            # kubeflow-training: the distill step launches the multi-node PaddleJob from here.
            requirements=(
                f"paddlepaddle-gpu=={paddle}",
                "kubeflow-training",
                *COMMON,
                *CUDA11_WHEELS,
            ),
            doctor_profile="gpu-train",
        ),
        ImageSpec(
            name="gpu-infer",
            title="ppminilm-gpu-infer",
            description=(
                f"PP-MiniLM INT8 benchmark on T4 (paddlepaddle-gpu {paddle}, CUDA 11.8,"
                f" TensorRT {TENSORRT_VERSION})"
            ),
            runtime=TENSORRT_RUNTIME,
            requirements=(f"paddlepaddle-gpu=={paddle}", *COMMON, *SERVE),
            doctor_profile="gpu-infer",
            unavailable_here=(
                f"needs {CUDA_BASE_IMAGE} and TensorRT {TENSORRT_VERSION} from NVIDIA's apt"
                " repository (PyPI has TensorRT 10.x and up only); build it where those are"
                " reachable"
            ),
        ),
    ]
    return {spec.name: spec for spec in specs}


def _digest_files(spec: ImageSpec) -> list[Path]:
    package = REPO / "src" / "ppminilm"
    files = [
        p
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]
    files += [REPO / "pyproject.toml", spec.lock_path, IMAGES_DIR / "Dockerfile"]
    files += [IMAGES_DIR / "sbom.py", IMAGES_DIR / "spec.py"]
    files += [p for p in (IMAGES_DIR / "runtime").iterdir() if p.is_file()]
    return sorted(files)


def source_digest(spec: ImageSpec) -> str:
    """SHA-256 over everything an image is built from (package sources, lock, Dockerfiles).

    The build stores it in the image's ``io.ppminilm.source-digest`` label; a container run
    compares it with the working tree so a stale image is refused instead of silently running
    old code.
    """
    digest = hashlib.sha256()
    for path in _digest_files(spec):
        digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
