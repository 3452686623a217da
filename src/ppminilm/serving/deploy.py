"""The cluster side of serving: ServingRuntimes and the InferenceService of one model.

Plain dicts, no kserve or paddle import: the pipeline's ``serve`` step writes
:func:`inference_service` as YAML; ``manifests/serving/serving-runtimes.yaml`` is
:func:`serving_runtimes` (tests/manifests checks they agree, and the InferenceService against
the KServe SDK's own API models).

The predictor runs ``ppminilm serve`` (the same server as locally) from the ServingRuntime of
its pool (:data:`ppminilm.cluster.platform.SERVING_POOLS`): ``ppminilm-cpu`` in the CPU image,
or ``ppminilm-t4`` in the TensorRT image on the T4 pool. KServe's storage initializer copies
``storageUri`` (the benchmark's ``deployable`` artifact in object storage) to ``/mnt/models``
with the credentials of the Secret that the service account ``ppminilm-serving`` lists. The
InferenceService's ``args`` are appended to the runtime's (KServe concatenates them, and the
last of a repeated flag wins), so the batching settings of the run travel with the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ppminilm.cluster import platform
from ppminilm.config import ServeConfig
from ppminilm.io import dumps_json

#: KServe's limit on an InferenceService name that still fits the Knative hostnames.
MAX_NAME_LEN = 45
_PART_OF = {"app.kubernetes.io/part-of": "ppminilm"}


def isvc_name(task: str, prefix: str = "ppminilm") -> str:
    """A DNS-1035 name for the InferenceService of ``task`` (``ppminilm-local-reviews``)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{task}".lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)[:MAX_NAME_LEN].rstrip("-")
    if not slug or not slug[0].isalpha():
        slug = f"m-{slug}"[:MAX_NAME_LEN].rstrip("-")
    return slug


def runtime_args(pool: platform.ServingPool) -> list[str]:
    """The ServingRuntime container's arguments (the model's name is KServe's ``{{.Name}}``)."""
    return [
        "serve",
        "--model-dir",
        platform.SERVING_MODEL_MOUNT,
        "--model-name",
        "{{.Name}}",
        # The pod's network namespace is the boundary on the cluster; the gateway and the
        # mesh's policies decide who reaches it.
        "--host",
        "0.0.0.0",
        "--port",
        str(platform.SERVING_HTTP_PORT),
        "--device",
        pool.device,
    ]


def _resources(pool: platform.ServingPool) -> dict[str, Any]:
    amounts: dict[str, Any] = {"cpu": pool.cpu, "memory": pool.memory}
    if pool.node_pool is not None:
        amounts[pool.node_pool.gpu_resource] = "1"
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _placement(pool: platform.ServingPool) -> dict[str, Any]:
    node_pool = pool.node_pool
    if node_pool is None:
        return {}
    return {
        "nodeSelector": dict(node_pool.node_selector),
        "tolerations": [
            {
                "key": node_pool.taint_key,
                "operator": "Equal",
                "value": node_pool.taint_value,
                "effect": node_pool.taint_effect,
            }
        ],
    }


def serving_runtime(pool: platform.ServingPool) -> dict[str, Any]:
    """The namespaced ``ServingRuntime`` of one pool."""
    port = platform.SERVING_HTTP_PORT
    probe = {"httpGet": {"path": "/v2/health/ready", "port": port}, "periodSeconds": 10}
    return {
        "apiVersion": platform.KSERVE_RUNTIME_API,
        "kind": "ServingRuntime",
        "metadata": {"name": pool.runtime, "labels": dict(_PART_OF)},
        "spec": {
            "annotations": {
                "prometheus.kserve.io/port": str(port),
                "prometheus.kserve.io/path": "/metrics",
            },
            "supportedModelFormats": [
                {
                    "name": platform.SERVING_MODEL_FORMAT,
                    "version": platform.SERVING_MODEL_FORMAT_VERSION,
                    "autoSelect": pool.node_pool is None,
                }
            ],
            "protocolVersions": ["v2", "v1"],
            "containers": [
                {
                    "name": "kserve-container",
                    "image": pool.image,
                    "command": ["ppminilm"],
                    "args": runtime_args(pool),
                    "ports": [{"containerPort": port, "protocol": "TCP"}],
                    "resources": _resources(pool),
                    "readinessProbe": probe,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": platform.IMAGE_UID,
                        "allowPrivilegeEscalation": False,
                    },
                }
            ],
        },
    }


def serving_runtimes() -> list[dict[str, Any]]:
    """Every pool's ServingRuntime, in :data:`ppminilm.cluster.platform.SERVING_POOLS` order."""
    return [serving_runtime(pool) for pool in platform.SERVING_POOLS.values()]


def serve_args(cfg: ServeConfig) -> list[str]:
    """The model's own server flags (appended to the runtime's by KServe)."""
    args = [
        "--threads", str(cfg.num_threads),
        "--max-batch-size", str(cfg.max_batch_size),
        "--max-wait-ms", f"{cfg.max_wait_ms:g}",
        "--grace-period", str(cfg.grace_period_s),
    ]  # fmt: skip
    if cfg.engine:
        args += ["--engine", cfg.engine]
    return args


def inference_service(
    name: str,
    storage_uri: str,
    cfg: ServeConfig,
    *,
    pool: str = "cpu",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``InferenceService`` of one deployable model.

    Args:
        name: Its name (:func:`isvc_name`); also the model name in the URL paths.
        storage_uri: The deployable artifact in object storage (``s3://bucket/...``).
        cfg: Server and scaling settings (replicas, autoscaling target, timeout, batching).
        pool: ``cpu`` or ``t4`` (:data:`ppminilm.cluster.platform.SERVING_POOLS`).
        labels: Extra labels (task, run).
        annotations: Extra annotations (engine, precision, source run).

    Raises:
        ValueError: On an unknown pool or a ``storage_uri`` that is not in object storage.
    """
    if pool not in platform.SERVING_POOLS:
        raise ValueError(
            f"unknown serving pool {pool!r}; expected one of {list(platform.SERVING_POOLS)}"
        )
    if not re.match(r"^(s3|gs)://[^/]+/.+", storage_uri):
        raise ValueError(
            f"storageUri {storage_uri!r}: expected an object-store URI (s3://bucket/path); "
            "a local pipeline run has none (its artifacts are local files)"
        )
    spec = platform.SERVING_POOLS[pool]
    model: dict[str, Any] = {
        "modelFormat": {
            "name": platform.SERVING_MODEL_FORMAT,
            "version": platform.SERVING_MODEL_FORMAT_VERSION,
        },
        "runtime": spec.runtime,
        "protocolVersion": "v2",
        "storageUri": storage_uri,
        "args": serve_args(cfg),
        "resources": _resources(spec),
    }
    predictor: dict[str, Any] = {
        "serviceAccountName": platform.SERVING_SERVICE_ACCOUNT,
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "scaleMetric": "concurrency",
        "scaleTarget": cfg.scale_target,
        "timeout": cfg.timeout_s,
        "terminationGracePeriodSeconds": cfg.grace_period_s + 10,
        **_placement(spec),
        "model": model,
    }
    return {
        "apiVersion": platform.KSERVE_ISVC_API,
        "kind": "InferenceService",
        "metadata": {
            "name": name,
            "labels": {**_PART_OF, **dict(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {"predictor": predictor},
    }


def to_yaml(objects: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """Objects as one multi-document YAML file (keys in the order built), with a comment."""
    import yaml

    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    docs = [yaml.safe_dump(dict(o), sort_keys=False, allow_unicode=True) for o in objects]
    return comment + "---\n" + "---\n".join(docs)


def describe(isvc: Mapping[str, Any]) -> str:
    """One JSON line of what an InferenceService serves (for logs and summaries)."""
    predictor = isvc["spec"]["predictor"]
    return dumps_json(
        {
            "name": isvc["metadata"]["name"],
            "runtime": predictor["model"]["runtime"],
            "storageUri": predictor["model"]["storageUri"],
            "replicas": [predictor["minReplicas"], predictor["maxReplicas"]],
        }
    ).strip()
