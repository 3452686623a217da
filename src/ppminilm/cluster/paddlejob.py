"""Multi-node distillation as a Kubeflow Training Operator ``PaddleJob``: the manifest.

:class:`PaddleJobSpec` holds the typed, validated inputs; :func:`build_paddlejob` turns it into
the ``kubeflow.org/v1`` ``PaddleJob`` manifest as a plain dict (no cluster, no SDK needed).
Launching, waiting, adopting and cleaning up live in :mod:`ppminilm.cluster.jobs`.

Every worker pod runs ``python -m ppminilm.stages.distill.launch`` (Paddle's launcher around
``ppminilm distill``, SIGTERM forwarded to the ranks, 143 after a pre-emption) in the GPU
training image on the V100 pool (node selector + toleration from
:mod:`ppminilm.cluster.platform`), with ``/dev/shm`` backed by memory and object-store
credentials taken from the Secret the manifests create. The Training Operator sets
``PADDLE_MASTER``, ``PADDLE_NNODES`` and ``PADDLE_JOB_ID`` in each pod; Paddle's launcher
reads them.

Lifecycle fields (issue 14):

* ``restartPolicy: ExitCode``: the operator restarts a worker that exits 128-255 (143 after
  SIGTERM, 137 after SIGKILL: pre-emption) and gives up on 1-127 (2: bad input). The restarted
  worker resumes from the newest S3 checkpoint; ``backoffLimit`` bounds the restarts. With
  ``Never`` a single pre-emption failed the job and ``backoffLimit`` did nothing.
* ``runPolicy.activeDeadlineSeconds``: the operator stops the job (and frees its GPUs) after
  this long, whatever happened to the step that launched it.
* ``runPolicy.ttlSecondsAfterFinished``: a finished job is deleted after this long (until then
  a retried step adopts it instead of training again).
* ``metadata.ownerReferences``: the launching pod, so Kubernetes' garbage collector deletes the
  job when that pod goes (a cancelled run); :mod:`ppminilm.cluster.jobs` re-points it when a
  retried step adopts the job.
* ``terminationGracePeriodSeconds``: time for rank 0 to finish its step and write the
  pre-emption checkpoint after SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from ppminilm.cluster.platform import (
    GPU_TRAIN_IMAGE,
    NAMESPACE,
    NODE_POOLS,
    S3_SECRET_KEYS,
    S3_SECRET_NAME,
    STORAGE_CONFIGMAP,
    V100_POOL,
    NodePool,
)
from ppminilm.errors import ClusterJobError

logger = logging.getLogger(__name__)

API_VERSION = "kubeflow.org/v1"
KIND = "PaddleJob"
#: The Training Operator looks for the container with this name in every replica.
CONTAINER_NAME = "paddle"
#: Port the operator advertises in PADDLE_MASTER; it finds it by this port name.
MASTER_PORT_NAME = "master"
MASTER_PORT = 37777
#: Where Paddle's launcher writes one log file per rank (writable by the image's non-root user).
LAUNCH_LOG_DIR = "/tmp/paddle-launch-logs"
#: ``python -m`` entry of every worker (see :mod:`ppminilm.stages.distill.launch`).
WORKER_MODULE = "ppminilm.stages.distill.launch"
#: Labels the jobs carry: the KFP run that launched it and the checkpoint prefix it writes.
RUN_ID_LABEL = "ppminilm.io/run-id"
CHECKPOINT_LABEL = "ppminilm.io/checkpoint"
#: kubeflow-training SDK the cluster path is tested with (also pinned in constraints.txt).
SDK_REQUIREMENT = "kubeflow-training==1.9.4"

#: Pod names are ``<job>-worker-<i>`` and must fit a 63-character DNS label.
MAX_NAME_LEN = 48
MAX_WORKERS = 64
MAX_GPUS_PER_WORKER = 16
RESTART_POLICIES = ("Never", "OnFailure", "ExitCode")
#: Longest ``activeDeadlineSeconds`` accepted (30 days) and the default TTL (1 day).
MAX_DEADLINE_S = 30 * 24 * 3600
DEFAULT_TTL_S = 24 * 3600
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Env names that would carry a credential: those come from the Secret, never from the spec.
_CREDENTIAL_ENV = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL)", re.IGNORECASE)


class PaddleJobError(ClusterJobError):
    """The PaddleJob could not be created, failed, or did not finish in time (infrastructure)."""


@dataclasses.dataclass(frozen=True)
class PaddleJobSpec:
    """Typed inputs of one multi-node distillation PaddleJob, validated at construction.

    Attributes:
        name: Job name, a DNS-1123 label of at most 48 characters.
        distill_args: Arguments after ``python -m ppminilm.cli distill`` (object-store URIs,
            config). Passed as an exec-form list: no shell, no quoting needed.
        workers: Number of worker pods (nodes).
        gpus_per_worker: GPUs per worker pod; one Paddle rank per GPU.
        image: Container image with paddlepaddle-gpu and this package (tag or digest pinned).
        cpu: CPU request and limit per worker (Kubernetes quantity).
        memory: Memory request and limit per worker (Kubernetes quantity).
        shm_size: Size limit of the memory-backed ``/dev/shm`` (NCCL and data loaders need it).
        node_pool: Name of the GPU pool in :data:`ppminilm.cluster.platform.NODE_POOLS`.
        s3_secret_name: Secret holding the object-store credentials.
        env: Extra non-secret environment variables for the workers.
        restart_policy: Worker restart policy; ``ExitCode`` (default) restarts pre-empted
            workers (exit 128-255) and fails on errors (1-127).
        backoff_limit: Worker restarts before the job is marked Failed.
        service_account: Service account of the worker pods.
        active_deadline_s: ``runPolicy.activeDeadlineSeconds``: the operator stops the job
            after this many seconds.
        ttl_after_finished_s: ``runPolicy.ttlSecondsAfterFinished``: a finished job is
            deleted after this many seconds.
        termination_grace_s: Seconds a worker gets after SIGTERM to write its checkpoint.
        labels: Extra job labels (run id, checkpoint key), Kubernetes label syntax.
    """

    name: str
    distill_args: tuple[str, ...] = ()
    workers: int = 2
    gpus_per_worker: int = 8
    image: str = GPU_TRAIN_IMAGE
    cpu: str = "16"
    memory: str = "96Gi"
    shm_size: str = "32Gi"
    node_pool: str = V100_POOL.name
    s3_secret_name: str = S3_SECRET_NAME
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    restart_policy: str = "ExitCode"
    backoff_limit: int = 6
    service_account: str = "pipeline-runner"
    active_deadline_s: int = 7 * 24 * 3600
    ttl_after_finished_s: int = DEFAULT_TTL_S
    termination_grace_s: int = 120
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Lists from JSON or KFP arrive as lists; keep the frozen spec hashable-ish and immutable.
        object.__setattr__(self, "distill_args", tuple(self.distill_args))
        object.__setattr__(self, "env", dict(self.env))
        object.__setattr__(self, "labels", dict(self.labels))
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: Naming the field, the value and what was expected.
        """
        _check_dns_label("name", self.name, MAX_NAME_LEN)
        _check_dns_label("s3_secret_name", self.s3_secret_name, 253)
        _check_dns_label("service_account", self.service_account, 253)
        for i, arg in enumerate(self.distill_args):
            if not isinstance(arg, str) or "\x00" in arg:
                raise ValueError(
                    f"PaddleJobSpec.distill_args[{i}]={arg!r}: expected a string without NUL"
                )
        _check_int("workers", self.workers, 1, MAX_WORKERS)
        _check_int("gpus_per_worker", self.gpus_per_worker, 1, MAX_GPUS_PER_WORKER)
        _check_int("backoff_limit", self.backoff_limit, 0, 100)
        _check_int("active_deadline_s", self.active_deadline_s, 60, MAX_DEADLINE_S)
        _check_int("ttl_after_finished_s", self.ttl_after_finished_s, 0, MAX_DEADLINE_S)
        _check_int("termination_grace_s", self.termination_grace_s, 1, 3600)
        for key, value in self.labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValueError(f"PaddleJobSpec.labels[{key!r}]: expected string keys/values")
            if not _LABEL_VALUE.match(value) or not key or len(key) > 253:
                raise ValueError(
                    f"PaddleJobSpec.labels[{key!r}]={value!r}: expected a Kubernetes label "
                    "value (at most 63 letters, digits, '-', '_' or '.')"
                )
        _check_image(self.image)
        for field_name in ("cpu", "memory", "shm_size"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not _QUANTITY.match(value):
                raise ValueError(
                    f"PaddleJobSpec.{field_name}={value!r}: expected a Kubernetes quantity "
                    "such as '8', '500m' or '64Gi'"
                )
        if self.node_pool not in NODE_POOLS:
            raise ValueError(
                f"PaddleJobSpec.node_pool={self.node_pool!r}: expected one of {sorted(NODE_POOLS)}"
            )
        if self.restart_policy not in RESTART_POLICIES:
            raise ValueError(
                f"PaddleJobSpec.restart_policy={self.restart_policy!r}: expected one of "
                f"{list(RESTART_POLICIES)}"
            )
        reserved = set(S3_SECRET_KEYS)
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise ValueError(f"PaddleJobSpec.env key {key!r}: expected a C identifier")
            if not isinstance(value, str):
                raise ValueError(f"PaddleJobSpec.env[{key!r}]: expected a string value")
            if key in reserved or _CREDENTIAL_ENV.search(key):
                raise ValueError(
                    f"PaddleJobSpec.env[{key!r}]: credentials come from the Secret "
                    f"{self.s3_secret_name!r}, never from plain env values"
                )

    @property
    def pool(self) -> NodePool:
        """The :class:`~ppminilm.cluster.platform.NodePool` the workers are scheduled on."""
        return NODE_POOLS[self.node_pool]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable field values."""
        out = dataclasses.asdict(self)
        out["distill_args"] = list(self.distill_args)
        out["env"], out["labels"] = dict(self.env), dict(self.labels)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaddleJobSpec:
        """Build a spec from plain values.

        Args:
            data: Field values; missing fields take their defaults.

        Returns:
            The validated spec.

        Raises:
            ValueError: On an unknown key (named, with the allowed keys) or a bad value.
        """
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(
                f"PaddleJobSpec: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}"
            )
        return cls(**dict(data))


def _check_dns_label(field_name: str, value: Any, max_len: int) -> None:
    if not isinstance(value, str) or not _DNS_LABEL.match(value) or len(value) > max_len:
        raise ValueError(
            f"PaddleJobSpec.{field_name}={value!r}: expected a DNS-1123 label (lower-case "
            f"letters, digits and '-', starting with a letter) of at most {max_len} characters"
        )


def _check_int(field_name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(
            f"PaddleJobSpec.{field_name}={value!r}: expected an integer in [{low}, {high}]"
        )


def _check_image(image: Any) -> None:
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise ValueError(f"PaddleJobSpec.image={image!r}: expected an image reference")
    if "@sha256:" in image:
        return
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        raise ValueError(
            f"PaddleJobSpec.image={image!r}: expected a pinned tag or digest (name:tag)"
        )
    if last.rsplit(":", 1)[1] == "latest":
        raise ValueError(f"PaddleJobSpec.image={image!r}: 'latest' is not a pinned tag")


def launch_command(spec: PaddleJobSpec) -> list[str]:
    """The worker container's command: the launch wrapper around ``ppminilm distill``.

    Args:
        spec: The job spec.

    Returns:
        Exec-form command list (``python -m ppminilm.stages.distill.launch ... -- ARGS``).
    """
    return [
        "python",
        "-m",
        WORKER_MODULE,
        "--nnodes",
        str(spec.workers),
        "--nproc-per-node",
        str(spec.gpus_per_worker),
        "--log-dir",
        LAUNCH_LOG_DIR,
        "--",
        *spec.distill_args,
    ]


def owner_reference(pod_name: str, pod_uid: str) -> dict[str, Any]:
    """An ownerReference to the launching pod (garbage collection deletes the job with it).

    ``blockOwnerDeletion`` is false: the pod's deletion must not wait for the job's, and
    setting it true needs ``pods/finalizers`` update rights the step does not have.

    Raises:
        ValueError: If the name or UID is empty.
    """
    if not pod_name or not pod_uid:
        raise ValueError(f"owner pod name {pod_name!r} / uid {pod_uid!r}: both are required")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod_name,
        "uid": pod_uid,
        "controller": False,
        "blockOwnerDeletion": False,
    }


def build_paddlejob(
    spec: PaddleJobSpec,
    namespace: str = NAMESPACE,
    owner: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the ``PaddleJob`` manifest for ``spec``.

    Args:
        spec: Validated job inputs.
        namespace: Namespace the job runs in (where the S3 Secret and storage ConfigMap live;
            the launching pod's own, so that ``owner`` may own it).
        owner: ownerReference of the launching pod (:func:`owner_reference`), or None.

    Returns:
        The ``kubeflow.org/v1`` ``PaddleJob`` as a plain dict, ready for ``kubectl apply`` or
        the kubeflow-training SDK.

    Raises:
        ValueError: If ``namespace`` is not a DNS-1123 label.
    """
    if not isinstance(namespace, str) or not _DNS_LABEL.match(namespace):
        raise ValueError(f"namespace={namespace!r}: expected a DNS-1123 label")
    pool = spec.pool
    gpus = str(spec.gpus_per_worker)
    labels = {
        "app.kubernetes.io/name": "ppminilm",
        "app.kubernetes.io/component": "distill",
        "app.kubernetes.io/managed-by": "ppminilm-paddlejob",
        **spec.labels,
    }
    env: list[dict[str, Any]] = [
        {
            "name": env_name,
            "valueFrom": {"secretKeyRef": {"name": spec.s3_secret_name, "key": secret_key}},
        }
        for env_name, secret_key in sorted(S3_SECRET_KEYS.items())
    ]
    env.extend({"name": k, "value": v} for k, v in sorted(spec.env.items()))
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": launch_command(spec),
        "env": env,
        # The storage ConfigMap (AWS_ENDPOINT_URL, AWS_REGION), whole: one place per overlay
        # (MinIO or an external S3), the same one the pipeline's storage stages load.
        "envFrom": [{"configMapRef": {"name": STORAGE_CONFIGMAP, "optional": False}}],
        "ports": [{"name": MASTER_PORT_NAME, "containerPort": MASTER_PORT, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": spec.cpu, "memory": spec.memory, pool.gpu_resource: gpus},
            "limits": {"cpu": spec.cpu, "memory": spec.memory, pool.gpu_resource: gpus},
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    pod_spec = {
        "serviceAccountName": spec.service_account,
        "terminationGracePeriodSeconds": spec.termination_grace_s,
        "securityContext": {"runAsNonRoot": True},
        "nodeSelector": dict(pool.node_selector),
        "tolerations": [
            {
                "key": pool.taint_key,
                "operator": "Equal",
                "value": pool.taint_value,
                "effect": pool.taint_effect,
            }
        ],
        "containers": [container],
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}}],
    }
    metadata: dict[str, Any] = {"name": spec.name, "namespace": namespace, "labels": dict(labels)}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "runPolicy": {
                "cleanPodPolicy": "Running",
                "backoffLimit": spec.backoff_limit,
                "activeDeadlineSeconds": spec.active_deadline_s,
                "ttlSecondsAfterFinished": spec.ttl_after_finished_s,
            },
            "paddleReplicaSpecs": {
                "Worker": {
                    "replicas": spec.workers,
                    "restartPolicy": spec.restart_policy,
                    "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
                }
            },
        },
    }


def _import_sdk() -> Any:
    try:
        import kubeflow.training as sdk
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the cluster path needs the Training Operator SDK: pip install '{SDK_REQUIREMENT}'"
        ) from exc
    return sdk


def to_sdk_model(manifest: Mapping[str, Any]) -> Any:
    """Turn a manifest from :func:`build_paddlejob` into the SDK's ``KubeflowOrgV1PaddleJob``.

    Needs no cluster: it only deserialises, so field-name mistakes show up in tests.

    Args:
        manifest: The PaddleJob dict.

    Returns:
        A ``kubeflow.training.KubeflowOrgV1PaddleJob``.
    """
    sdk = _import_sdk()

    class _Response:  # the SDK deserialises from an HTTP-response-like object
        data = json.dumps(manifest)

    return sdk.ApiClient().deserialize(_Response(), "KubeflowOrgV1PaddleJob")
