"""Cluster-facing constants shared by images/, manifests/, components/ and pipelines/.

One image constant per image, tied to the package version, and one description per GPU node
pool. Components and pipelines import these; nothing else spells an image tag or a node label.
Tests under tests/images and tests/manifests check that Dockerfiles and manifests agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ppminilm import __version__

#: Default registry prefix of the project's images.
DEFAULT_IMAGE_REGISTRY = "ghcr.io/ppminilm-kfp"
#: Registry prefix in use: ``$IMAGE_REGISTRY`` when set (``make images push IMAGE_REGISTRY=...``
#: and ``make compile IMAGE_REGISTRY=...`` then agree), else the default.
IMAGE_REGISTRY = os.environ.get("IMAGE_REGISTRY", "").rstrip("/") or DEFAULT_IMAGE_REGISTRY

#: CPU image: paddlepaddle (CPU) + paddlenlp + paddleslim + this package. Runs every stage.
CPU_IMAGE = f"{IMAGE_REGISTRY}/ppminilm-cpu:{__version__}"
#: GPU training image: paddlepaddle-gpu for V100 (CUDA 11.x, NCCL) for distillation/fine-tuning.
GPU_TRAIN_IMAGE = f"{IMAGE_REGISTRY}/ppminilm-gpu-train:{__version__}"
#: GPU inference image: paddlepaddle-gpu with TensorRT for the T4 INT8 benchmark.
GPU_INFER_IMAGE = f"{IMAGE_REGISTRY}/ppminilm-gpu-infer:{__version__}"

#: Image name (directory under images/) -> full reference.
IMAGES = {
    "cpu": CPU_IMAGE,
    "gpu-train": GPU_TRAIN_IMAGE,
    "gpu-infer": GPU_INFER_IMAGE,
}


@dataclass(frozen=True)
class NodePool:
    """A GPU node pool as the pipeline targets it and the manifests describe it.

    Attributes:
        name: Short pool name used in docs and overlays.
        accelerator: Value of the accelerator node label.
        node_selector: Label key/value pairs a pod must match.
        taint_key: Key of the NoSchedule taint on the pool's nodes.
        taint_value: Value of that taint.
        gpu_resource: Extended resource name of the GPUs.
    """

    name: str
    accelerator: str
    node_selector: dict[str, str] = field(default_factory=dict)
    taint_key: str = "nvidia.com/gpu"
    taint_value: str = "present"
    taint_effect: str = "NoSchedule"
    gpu_resource: str = "nvidia.com/gpu"


#: Label key carrying the accelerator model on GPU nodes (GKE's key; EKS/kind overlays add it).
ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"

#: Distillation / training pool (V100).
V100_POOL = NodePool(
    name="v100",
    accelerator="nvidia-tesla-v100",
    node_selector={ACCELERATOR_LABEL: "nvidia-tesla-v100"},
)
#: INT8 TensorRT benchmark pool (T4).
T4_POOL = NodePool(
    name="t4",
    accelerator="nvidia-tesla-t4",
    node_selector={ACCELERATOR_LABEL: "nvidia-tesla-t4"},
)

NODE_POOLS = {pool.name: pool for pool in (V100_POOL, T4_POOL)}

#: Kubernetes namespace the manifests create and the pipeline runs in.
NAMESPACE = "ppminilm"
#: Name of the Secret holding object-store credentials (keys below), created by manifests/.
S3_SECRET_NAME = "ppminilm-s3-credentials"
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "accesskey", "AWS_SECRET_ACCESS_KEY": "secretkey"}
#: Bucket the pipeline root and corpus shards live in.
S3_BUCKET = "ppminilm"
