"""Multi-node distillation as a Kubeflow Training Operator ``PaddleJob``.

:class:`PaddleJobSpec` holds the typed, validated inputs; :func:`build_paddlejob` turns it into
the ``kubeflow.org/v1`` ``PaddleJob`` manifest as a plain dict (no cluster, no SDK needed), and
:func:`launch_and_wait` submits that manifest with the ``kubeflow-training`` SDK and waits for it.

Every worker pod runs ``python -m paddle.distributed.launch ... python -m ppminilm.cli distill
...`` in the GPU training image on the V100 pool (node selector + toleration from
:mod:`ppminilm.cluster.platform`), with ``/dev/shm`` backed by memory and object-store
credentials taken
from the Secret the manifests create. The Training Operator sets ``PADDLE_MASTER``,
``PADDLE_NNODES`` and ``PADDLE_JOB_ID`` in each pod; Paddle's launcher reads them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.cluster.platform import (
    GPU_TRAIN_IMAGE,
    NAMESPACE,
    NODE_POOLS,
    S3_SECRET_KEYS,
    S3_SECRET_NAME,
    V100_POOL,
    NodePool,
)
from ppminilm.errors import ClusterJobError
from ppminilm.io import atomic_write_json

logger = logging.getLogger(__name__)

API_VERSION = "kubeflow.org/v1"
KIND = "PaddleJob"
#: The Training Operator looks for the container with this name in every replica.
CONTAINER_NAME = "paddle"
#: Port the operator advertises in PADDLE_MASTER; it finds it by this port name.
MASTER_PORT_NAME = "master"
MASTER_PORT = 37777
#: ConfigMap (created by manifests/) with the object-store settings (PPMINILM_S3_ENDPOINT,
#: AWS_REGION) that ppminilm.storage reads from the environment.
STORAGE_CONFIGMAP = "ppminilm-storage"
#: Where Paddle's launcher writes one log file per rank (writable by the image's non-root user).
LAUNCH_LOG_DIR = "/tmp/paddle-launch-logs"
#: kubeflow-training SDK the cluster path is tested with (also pinned in constraints.txt).
SDK_REQUIREMENT = "kubeflow-training==1.9.4"

#: Pod names are ``<job>-worker-<i>`` and must fit a 63-character DNS label.
MAX_NAME_LEN = 48
MAX_WORKERS = 64
MAX_GPUS_PER_WORKER = 16
RESTART_POLICIES = ("Never", "OnFailure", "ExitCode")

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
        restart_policy: Worker restart policy (``Never``, ``OnFailure`` or ``ExitCode``).
        backoff_limit: Retries of the whole job before it is marked Failed.
        service_account: Service account of the worker pods.
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
    restart_policy: str = "Never"
    backoff_limit: int = 2
    service_account: str = "pipeline-runner"

    def __post_init__(self) -> None:
        # Lists from JSON or KFP arrive as lists; keep the frozen spec hashable-ish and immutable.
        object.__setattr__(self, "distill_args", tuple(self.distill_args))
        object.__setattr__(self, "env", dict(self.env))
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
    """The worker container's command: Paddle's launcher around ``ppminilm.cli distill``.

    Args:
        spec: The job spec.

    Returns:
        Exec-form command list.
    """
    return [
        "python",
        "-m",
        "paddle.distributed.launch",
        "--nnodes",
        str(spec.workers),
        "--nproc_per_node",
        str(spec.gpus_per_worker),
        "--log_dir",
        LAUNCH_LOG_DIR,
        # Paddle's launcher runs a non-.py "script" as an executable with the rest as its args.
        "python",
        "-m",
        "ppminilm.cli",
        "distill",
        *spec.distill_args,
    ]


def build_paddlejob(spec: PaddleJobSpec, namespace: str = NAMESPACE) -> dict[str, Any]:
    """Build the ``PaddleJob`` manifest for ``spec``.

    Args:
        spec: Validated job inputs.
        namespace: Namespace the job runs in (where the S3 Secret and storage ConfigMap live).

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
        # PPMINILM_S3_ENDPOINT and AWS_REGION: one place per overlay (MinIO or an external S3).
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
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": spec.name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": spec.backoff_limit},
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


def launch_and_wait(
    spec: PaddleJobSpec,
    namespace: str = NAMESPACE,
    timeout_s: int = 7 * 24 * 3600,
    polling_interval_s: int = 30,
    delete_on_timeout: bool = True,
) -> dict[str, Any]:
    """Create the PaddleJob and wait until it succeeds.

    Args:
        spec: Validated job inputs.
        namespace: Namespace to run in.
        timeout_s: Seconds to wait for the ``Succeeded`` condition.
        polling_interval_s: Seconds between status polls.
        delete_on_timeout: Delete the job (freeing its GPUs) when it times out.

    Returns:
        A record: the submitted manifest and the job's final status (conditions, replica
        statuses, times) as plain values.

    Raises:
        ValueError: If ``timeout_s`` or ``polling_interval_s`` is not positive.
        ImportError: If the kubeflow-training SDK is not installed.
        PaddleJobError: If the job cannot be created, fails, or times out; the message says
            which ``kubectl`` command shows why.
    """
    if timeout_s <= 0 or polling_interval_s <= 0:
        raise ValueError(
            f"timeout_s={timeout_s}, polling_interval_s={polling_interval_s}: expected > 0"
        )
    sdk = _import_sdk()
    manifest = build_paddlejob(spec, namespace)
    client = sdk.TrainingClient(namespace=namespace, job_kind=KIND)
    where = f"{KIND} {namespace}/{spec.name}"
    hint = (
        f"check: kubectl -n {namespace} describe paddlejob {spec.name}; "
        f"kubectl -n {namespace} logs -l training.kubeflow.org/job-name={spec.name}"
    )
    logger.info(
        "creating %s: %d worker(s) x %d GPU(s) on pool %s",
        where,
        spec.workers,
        spec.gpus_per_worker,
        spec.node_pool,
    )
    try:
        client.create_job(job=to_sdk_model(manifest), namespace=namespace)
    except (RuntimeError, TimeoutError) as exc:
        raise PaddleJobError(f"could not create {where}: {exc}") from exc
    try:
        job = client.wait_for_job_conditions(
            name=spec.name,
            namespace=namespace,
            job_kind=KIND,
            expected_conditions={"Succeeded"},
            wait_timeout=timeout_s,
            polling_interval=polling_interval_s,
        )
    except TimeoutError as exc:
        if delete_on_timeout:
            logger.warning("%s timed out after %d s; deleting it", where, timeout_s)
            client.delete_job(name=spec.name, namespace=namespace, job_kind=KIND)
        raise PaddleJobError(f"{where} did not succeed within {timeout_s} s; {hint}") from exc
    except RuntimeError as exc:
        raise PaddleJobError(f"{where} failed: {exc}; {hint}") from exc
    status = sdk.ApiClient().sanitize_for_serialization(job).get("status", {})
    logger.info("%s succeeded", where)
    return {"manifest": manifest, "status": status}


def save_job_record(record: Mapping[str, Any], path: str | Path) -> None:
    """Write a job record from :func:`launch_and_wait` as JSON, completely or not at all.

    Args:
        record: The record.
        path: Destination file; its parent directory is created.
    """
    atomic_write_json(path, dict(record))


def run_distill_job(
    record_path: str | Path,
    *,
    job_name: str,
    distill_args: Sequence[str],
    workers: int,
    gpus_per_worker: int,
    image: str = "",
    namespace: str = "",
    cpu: str = "16",
    memory: str = "96Gi",
    shm_size: str = "32Gi",
    timeout_s: int = 604800,
) -> dict[str, Any]:
    """Component entry: build the spec, launch the PaddleJob, wait, and save its record.

    Empty ``image``/``namespace`` mean the project's GPU training image and namespace.

    Returns:
        The job record (as saved to ``record_path``).
    """
    from ppminilm.cluster import platform

    spec = PaddleJobSpec(
        name=job_name,
        distill_args=tuple(distill_args),
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        image=image or platform.GPU_TRAIN_IMAGE,
        cpu=cpu,
        memory=memory,
        shm_size=shm_size,
    )
    record = launch_and_wait(spec, namespace=namespace or platform.NAMESPACE, timeout_s=timeout_s)
    save_job_record(record, record_path)
    return dict(record)
