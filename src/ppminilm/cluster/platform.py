"""Cluster-facing constants shared by images/, manifests/, components/ and pipelines/.

One image constant per image, tied to the package version, and one description per GPU node
pool. Components and pipelines import these; nothing else spells an image tag or a node label.
Tests under tests/images and tests/manifests check that Dockerfiles and manifests agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ppminilm import __version__

#: Registry prefix for the project's images (override at build time with IMAGE_REGISTRY).
IMAGE_REGISTRY = "ghcr.io/ppminilm-kfp"

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

# --- Namespaces, service accounts, storage wiring (issue 13) ------------------------------

#: Namespace KFP itself runs in. Standalone KFP (single-user) runs every pipeline pod here,
#: so the standalone overlays install our objects here too.
KFP_NAMESPACE = "kubeflow"
#: KFP install types and, for each, the namespace runs execute in (multi-user: the Profile
#: ``NAMESPACE``) and the service account the API server gives a run that names none
#: (``DEFAULTPIPELINERUNNERSERVICEACCOUNT`` of each upstream install). Our Role is bound to it.
INSTALL_TYPES = ("standalone", "multi-user")
RUN_NAMESPACE = {"standalone": KFP_NAMESPACE, "multi-user": NAMESPACE}
RUN_SERVICE_ACCOUNT = {"standalone": "pipeline-runner", "multi-user": "default-editor"}
#: ConfigMap with the non-secret object-store settings (endpoint, region), created by
#: manifests/ in the run namespace and loaded as env by every task that touches storage.
STORAGE_CONFIGMAP = "ppminilm-storage"
#: Its keys: the standard AWS variables, which ppminilm.storage, boto3 and the aws CLI read.
STORAGE_CONFIG_KEYS = ("AWS_ENDPOINT_URL", "AWS_REGION")
#: The object store the manifests deploy (Service name and API port), same namespace as runs.
MINIO_SERVICE = "ppminilm-minio"
MINIO_PORT = 9000
#: uid/gid of the images' user (images/runtime/setup.sh: ``useradd --uid 10001 --gid 0``).
IMAGE_UID = 10001
IMAGE_GID = 0


# --- Serving (issue 20) -----------------------------------------------------------------

#: KServe API versions of the objects the serve step and manifests/serving/ write.
KSERVE_ISVC_API = "serving.kserve.io/v1beta1"
KSERVE_RUNTIME_API = "serving.kserve.io/v1alpha1"
#: Service account the predictor pods run as: KServe's storage initializer reads the
#: credentials of ``storageUri`` from the Secret it lists (manifests/serving/).
SERVING_SERVICE_ACCOUNT = "ppminilm-serving"
#: That Secret: KServe wants the keys ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (its
#: ``inferenceservice-config`` defaults) and the endpoint in ``serving.kserve.io/s3-*``
#: annotations, so it is not the pipeline's ``S3_SECRET_NAME`` (keys accesskey/secretkey).
SERVING_S3_SECRET = "ppminilm-serving-s3"
SERVING_S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
#: The model format our ServingRuntimes declare and the InferenceServices ask for.
SERVING_MODEL_FORMAT = "ppminilm"
SERVING_MODEL_FORMAT_VERSION = "1"
#: Where KServe's storage initializer puts ``storageUri`` in the predictor container.
SERVING_MODEL_MOUNT = "/mnt/models"
#: The predictor's HTTP port (KServe's default; probes and the gateway use it).
SERVING_HTTP_PORT = 8080


@dataclass(frozen=True)
class ServingPool:
    """Where and on what a predictor runs: a ServingRuntime, its image and resources.

    Attributes:
        name: ``cpu`` or ``t4``.
        runtime: ServingRuntime name.
        image: Container image.
        device: ``ppminilm serve --device``.
        cpu: CPU request and limit (guaranteed: latency must not share cores).
        memory: Memory request and limit.
        node_pool: GPU node pool (selector, toleration, GPU resource), or None for CPU nodes.
    """

    name: str
    runtime: str
    image: str
    device: str
    cpu: str
    memory: str
    node_pool: NodePool | None = None


#: The two places a model can be served: CPU nodes (the CPU image, the engine the benchmark
#: chose) or the T4 pool (the TensorRT image, Paddle with TensorRT).
SERVING_POOLS = {
    "cpu": ServingPool("cpu", "ppminilm-cpu", CPU_IMAGE, "cpu", "2", "4Gi"),
    "t4": ServingPool("t4", "ppminilm-t4", GPU_INFER_IMAGE, "gpu", "4", "16Gi", T4_POOL),
}


# --- Per-task resources, timeouts and retries: one table (issue 13) ------------------------

_QTY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti)?$")
_FACTORS = {None: 1.0, "m": 1e-3, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def quantity(value: str) -> float:
    """A Kubernetes quantity (``"500m"``, ``"8"``, ``"16Gi"``) as a number (cores or bytes).

    Raises:
        ValueError: If ``value`` is not such a quantity.
    """
    match = _QTY.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"{value!r}: expected a quantity such as '500m', '8' or '16Gi'")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def _gib(value: float) -> str:
    return f"{value / 2.0**30:g}Gi"


@dataclass(frozen=True)
class TaskResources:
    """What one pipeline task may use on the cluster, and how long and how often it may run.

    Attributes:
        cpu_request: CPU request (Kubernetes quantity).
        cpu_limit: CPU limit.
        memory: Memory for the process itself; the container's memory request.
        shm: Size limit of the memory-backed ``/dev/shm``, or ``""`` for none. A memory
            emptyDir counts against the container's memory limit, so the limit is
            ``memory + shm`` (:attr:`memory_limit`).
        timeout_s: Pod deadline (``activeDeadlineSeconds``) of one attempt.
        retries: Attempts after the first (0: no retry).
        backoff_s: Wait before the first retry; doubles each retry.
        gpus: Accelerators per task (0: a CPU task).
    """

    cpu_request: str
    cpu_limit: str
    memory: str
    shm: str = ""
    timeout_s: int = 3600
    retries: int = 0
    backoff_s: int = 60
    gpus: int = 0

    def __post_init__(self) -> None:
        for name in ("cpu_request", "cpu_limit", "memory"):
            quantity(getattr(self, name))
        if self.shm:
            quantity(self.shm)
        if quantity(self.cpu_request) > quantity(self.cpu_limit):
            raise ValueError(f"cpu_request {self.cpu_request} > cpu_limit {self.cpu_limit}")
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0 or self.gpus < 0:
            raise ValueError(f"{self}: timeout_s > 0, retries/backoff_s/gpus >= 0 expected")

    @property
    def memory_limit(self) -> str:
        """Memory limit: the process's memory plus the memory-backed /dev/shm."""
        total = quantity(self.memory) + (quantity(self.shm) if self.shm else 0.0)
        return _gib(total)

    @property
    def backoff_max_s(self) -> int:
        """Argo's retry ``maxDuration``, counted from the first start: every attempt may run
        to its deadline and every backoff may elapse (KFP's default of 3600 s would stop
        retrying a long GPU task before its first retry)."""
        backoffs = sum(self.backoff_s * 2**i for i in range(self.retries))
        return (self.retries + 1) * self.timeout_s + backoffs


_HOUR = 3600
_DAY = 24 * _HOUR

#: Per stage (component name) and branch (``cpu``: CPU image, no accelerator; ``gpu``: the
#: task as the GPU branch places it). Sized for the pools in this module (V100 nodes with 8
#: GPUs / 64 vCPU / 416 GB, n1-highmem-64; T4 nodes with 1 GPU / 8 vCPU / 30 GB,
#: n1-standard-8) and, for the CPU branch, for the local-kind quota. ``distill`` on the GPU
#: branch holds one whole V100 node (gpus_per_node GPUs, 8 by default).
TASK_RESOURCES: dict[str, dict[str, TaskResources]] = {
    # Checks the search's widths and budget before anything trains: seconds, no paddle.
    "check-search": {
        "cpu": TaskResources("250m", "1", "1Gi", timeout_s=15 * 60, retries=2),
        "gpu": TaskResources("250m", "1", "1Gi", timeout_s=15 * 60, retries=2),
    },
    "build-data": {
        "cpu": TaskResources("1", "4", "8Gi", timeout_s=6 * _HOUR, retries=2),
        "gpu": TaskResources("2", "8", "16Gi", timeout_s=6 * _HOUR, retries=2),
    },
    "pretrain-teacher": {
        "cpu": TaskResources("2", "4", "8Gi", timeout_s=12 * _HOUR, retries=1),
        "gpu": TaskResources("8", "8", "48Gi", "8Gi", 12 * _HOUR, retries=2, gpus=1),
    },
    "distill": {
        "cpu": TaskResources("2", "4", "8Gi", timeout_s=12 * _HOUR, retries=1),
        "gpu": TaskResources("48", "60", "256Gi", "64Gi", 7 * _DAY, retries=3, gpus=8),
    },
    # The step that stages the inputs, launches a multi-node PaddleJob and waits for it (the
    # GPU branch's distill with distill_nodes > 1, or the paddlejob-distill component): a CPU
    # node, no GPU (the job's workers hold them). Its deadline covers the job's own
    # activeDeadlineSeconds (7 days, ppminilm.cluster.jobs) plus staging and the download of
    # the student; a retry adopts the job of the same run instead of training again.
    "paddlejob-distill": {
        "cpu": TaskResources("500m", "2", "4Gi", timeout_s=7 * _DAY + 2 * _HOUR, retries=2),
        "gpu": TaskResources("500m", "2", "4Gi", timeout_s=7 * _DAY + 2 * _HOUR, retries=2),
    },
    "finetune": {
        "cpu": TaskResources("2", "2", "6Gi", timeout_s=12 * _HOUR, retries=1),
        "gpu": TaskResources("6", "7", "40Gi", "8Gi", 12 * _HOUR, retries=2, gpus=1),
    },
    "select-best": {
        "cpu": TaskResources("500m", "1", "2Gi", timeout_s=_HOUR, retries=2),
        "gpu": TaskResources("500m", "1", "2Gi", timeout_s=_HOUR, retries=2),
    },
    # Stages inside the per-task recipe (finetune ... select-candidate) keep the same deadline in
    # both branches: KFP's SDK merges the CPU recipe's executor configs into the GPU recipe's
    # executors of the same name while compiling (tests/pipelines/test_policy.py checks).
    "prune": {
        "cpu": TaskResources("2", "4", "8Gi", timeout_s=_DAY, retries=1),
        "gpu": TaskResources("6", "7", "40Gi", "8Gi", _DAY, retries=2, gpus=1),
    },
    # The search loop's first step: copies one width's sub-model out of the prune output.
    "take-width": {
        "cpu": TaskResources("250m", "1", "2Gi", timeout_s=_HOUR, retries=2),
        "gpu": TaskResources("250m", "1", "2Gi", timeout_s=_HOUR, retries=2),
    },
    "quantize": {
        "cpu": TaskResources("2", "4", "8Gi", timeout_s=6 * _HOUR, retries=1),
        "gpu": TaskResources("6", "7", "18Gi", "4Gi", 6 * _HOUR, retries=2, gpus=1),
    },
    "benchmark": {
        # Guaranteed CPU (request == limit): the timings must not share cores.
        "cpu": TaskResources("2", "2", "6Gi", timeout_s=2 * _HOUR, retries=1),
        "gpu": TaskResources("6", "7", "18Gi", "4Gi", 2 * _HOUR, retries=2, gpus=1),
    },
    # The speed column: every row of a task timed interleaved in one step (guaranteed CPU, or
    # the T4 the rows will serve on).
    "time-rows": {
        "cpu": TaskResources("2", "2", "6Gi", timeout_s=2 * _HOUR, retries=1),
        "gpu": TaskResources("6", "7", "18Gi", "4Gi", 2 * _HOUR, retries=2, gpus=1),
    },
    # The search's choice: reads the rows and the timing, copies the chosen model.
    "select-candidate": {
        "cpu": TaskResources("250m", "1", "2Gi", timeout_s=_HOUR, retries=2),
        "gpu": TaskResources("250m", "1", "2Gi", timeout_s=_HOUR, retries=2),
    },
    "report": {
        "cpu": TaskResources("500m", "2", "4Gi", timeout_s=_HOUR, retries=2),
        "gpu": TaskResources("500m", "2", "4Gi", timeout_s=_HOUR, retries=2),
    },
    # Writes the InferenceService YAML of the chosen model (reads its serving.json): a CPU
    # node in both branches; the predictor it describes gets SERVING_POOLS' resources.
    "serve": {
        "cpu": TaskResources("250m", "1", "2Gi", timeout_s=15 * 60, retries=2),
        "gpu": TaskResources("250m", "1", "2Gi", timeout_s=15 * 60, retries=2),
    },
}


def task_resources(stage: str, gpu: bool) -> TaskResources:
    """The row of :data:`TASK_RESOURCES` for a stage in the GPU or CPU branch.

    Raises:
        KeyError: Naming the stage and the known ones.
    """
    if stage not in TASK_RESOURCES:
        raise KeyError(
            f"no resources declared for stage {stage!r}; known: {sorted(TASK_RESOURCES)}"
        )
    return TASK_RESOURCES[stage]["gpu" if gpu else "cpu"]


#: Loop parallelism (compile-time: KFP refuses a pipeline parameter here), per branch.
#: GPU branch: 2 tasks x 3 grid points fine-tuning on V100s at once; the search's widths loop
#: quantizes and benchmarks 2 widths per task at once on T4s (2 GPUs per width: its FP32
#: benchmark runs beside the quantization). See tests/pipelines for the check that every
#: branch's peak fits the cluster overlay's GPU quota.
TASK_LOOP_PARALLELISM = {"cpu": 1, "gpu": 2}
GRID_LOOP_PARALLELISM = {"cpu": 2, "gpu": 3}
WIDTH_LOOP_PARALLELISM = {"cpu": 2, "gpu": 2}


# --- Image references at compile time (issue 13) ------------------------------------------

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def image_refs(
    registry: str = "", tag: str = "", digests: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Full references of the project's images for a registry, tag and optional digests.

    Args:
        registry: Registry prefix, e.g. ``registry.example.com/ml`` (empty: ``IMAGE_REGISTRY``).
        tag: Image tag (empty: the package version). ``latest`` is refused: tags move.
        digests: Image name (``cpu``, ``gpu-train``, ``gpu-infer``) -> ``sha256:<64 hex>``;
            a pinned image is ``registry/name:tag@sha256:...`` (the digest wins when pulling).

    Returns:
        Image name -> reference, for every image in :data:`IMAGES`.

    Raises:
        ValueError: Naming the bad registry, tag, image name or digest.
    """
    registry = (registry or IMAGE_REGISTRY).rstrip("/")
    tag = tag or __version__
    if not _REGISTRY.match(registry):
        raise ValueError(f"IMAGE_REGISTRY={registry!r}: expected host[:port]/path in lower case")
    if not _TAG.match(tag) or tag == "latest":
        raise ValueError(f"IMAGE_TAG={tag!r}: expected a fixed tag (not 'latest')")
    digests = dict(digests or {})
    unknown = sorted(set(digests) - set(IMAGES))
    if unknown:
        raise ValueError(f"image digests for unknown image(s) {unknown}; known: {sorted(IMAGES)}")
    refs = {}
    for name in IMAGES:
        ref = f"{registry}/ppminilm-{name}:{tag}"
        if name in digests:
            if not _DIGEST.match(digests[name]):
                raise ValueError(f"digest of {name}={digests[name]!r}: expected sha256:<64 hex>")
            ref += f"@{digests[name]}"
        refs[name] = ref
    return refs
