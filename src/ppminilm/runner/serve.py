"""Runner step of stage 6: the InferenceService of the benchmark's chosen model.

The step does not start a server; it checks that the model is deployable (its ``serving.json``
and engine files) and writes what a cluster needs to serve it: the InferenceService YAML
(:func:`ppminilm.serving.deploy.inference_service`) and a Markdown note saying how to apply it
and how callers reach it through Kubeflow's gateway. ``make deploy-model RUN=...`` applies it.

On a cluster the model is already in object storage (the artifact's URI is the
``storageUri``). A local run's artifacts are local files: the YAML then names the object-store
prefix the model is to be uploaded to (``s3://<bucket>/models/<name>/<run>``), and records the
local directory in the ``ppminilm.dev/model-source`` annotation, so ``make deploy-model``
uploads it there first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ppminilm.cluster import platform
from ppminilm.config import ServeConfig, resolve
from ppminilm.contracts import StageSummary
from ppminilm.io import atomic_write_text, is_remote
from ppminilm.runner.core import stage, summarize

logger = logging.getLogger(__name__)

#: Annotation of a local run's InferenceService: the model directory to upload first.
MODEL_SOURCE_ANNOTATION = "ppminilm.dev/model-source"
#: Object-store prefix a local run's model is uploaded to by ``make deploy-model``.
LOCAL_MODELS_PREFIX = f"s3://{platform.S3_BUCKET}/models"


def storage_uri_for(model_uri: str, name: str, run_id: str) -> tuple[str, str]:
    """``(storageUri, local source)``: the artifact's own URI on a cluster (KFP's
    ``minio://`` spelled ``s3://``, which KServe's storage initializer reads); for a local
    artifact, the upload prefix of :data:`LOCAL_MODELS_PREFIX` and the local path."""
    if is_remote(model_uri):
        return re.sub(r"^minio://", "s3://", model_uri.rstrip("/")), ""
    run = re.sub(r"[^A-Za-z0-9._-]+", "-", run_id).strip("-") or "local"
    return f"{LOCAL_MODELS_PREFIX}/{name}/{run}", str(Path(model_uri).resolve())


def deploy_notes(isvc: Mapping[str, Any], source: str, namespace_hint: str) -> str:
    """The Markdown the KFP UI shows: what is served, how to deploy it, how to call it."""
    name = isvc["metadata"]["name"]
    model = isvc["spec"]["predictor"]["model"]
    upload = (
        f"\nThe model is local ({source}); `make deploy-model` uploads it to "
        f"`{model['storageUri']}` first.\n"
        if source
        else ""
    )
    body = (
        '{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], '
        '"data": ["这个东西很好用"]}]}'
    )
    return f"""# Serve `{name}`

| | |
|---|---|
| runtime | `{model["runtime"]}` |
| storageUri | `{model["storageUri"]}` |
| service account | `{isvc["spec"]["predictor"]["serviceAccountName"]}` |
| replicas | {isvc["spec"]["predictor"]["minReplicas"]}-{isvc["spec"]["predictor"]["maxReplicas"]} |
| annotations | {", ".join(f"`{k}={v}`" for k, v in isvc["metadata"]["annotations"].items())} |
{upload}
Deploy (KServe installed; `manifests/serving/` gives the runtimes and the service account):

    make deploy-model RUN=<this artifact, or the local run's --out> NAMESPACE={namespace_hint}

Call it through Kubeflow's gateway (oauth2-proxy accepts a Kubernetes service-account token):

    TOKEN=$(kubectl -n {namespace_hint} create token default-editor)
    curl -H "Authorization: Bearer $TOKEN" -H "Host: {name}.{namespace_hint}.<domain>" \\
      http://<istio-ingressgateway>/v2/models/{name}/infer -d '{body}'
"""


@stage(
    "serve",
    ServeConfig,
    metrics=("min_replicas", "max_replicas"),
    metadata=("name", "task", "pool", "runtime", "storage_uri", "engine", "precision"),
)
def serve_manifest(
    model: str | Path,
    out: str | Path,
    *,
    model_uri: str = "",
    notes: str | Path | None = None,
    task: str | None = None,
    pool: str = "cpu",
    run_id: str = "",
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    **fields: Any,
) -> StageSummary:
    """Write the InferenceService of a deployable model.

    Args:
        model: The deployable inference dir (the benchmark's ``deployable`` output).
        out: The InferenceService YAML file.
        model_uri: Where ``model`` lives (the KFP artifact's URI; default: ``model``).
        notes: Where the Markdown deploy notes go (the KFP UI's view of the step).
        task: Task name (default: the model's).
        pool: ``cpu`` or ``t4``.
        run_id: The pipeline run (labels, and a local run's upload prefix).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"serve": {...}}``).
        **fields: ``ServeConfig`` fields.

    Raises:
        ModelFormatError: If ``model`` is not a deployable inference dir.
        ValueError: On an unknown pool.
    """
    from ppminilm.modeling.export import read_serving_config
    from ppminilm.serving.deploy import inference_service, isvc_name, to_yaml

    serving = read_serving_config(model)
    task = task or serving.task or "model"
    cfg = resolve(ServeConfig, profile, overrides, task, **fields)
    if pool not in platform.SERVING_POOLS:
        raise ValueError(f"serve: pool={pool!r}; expected one of {list(platform.SERVING_POOLS)}")
    if pool == "t4" and serving.engine != "paddle":
        raise ValueError(
            f"serve: the T4 pool runs Paddle with TensorRT; {model} is for {serving.engine!r}"
        )
    name = isvc_name(task)
    storage_uri, source = storage_uri_for(model_uri or str(model), name, run_id)
    annotations = {
        "ppminilm.dev/engine": serving.engine,
        "ppminilm.dev/precision": serving.precision,
        "ppminilm.dev/max-seq-len": str(serving.max_seq_len),
        "ppminilm.dev/labels": ",".join(serving.labels),
    }
    if source:
        annotations[MODEL_SOURCE_ANNOTATION] = source
    labels = {"ppminilm.dev/task": re.sub(r"[^A-Za-z0-9._-]", "-", task)[:63]}
    if run_id:
        labels["ppminilm.dev/run"] = re.sub(r"[^A-Za-z0-9._-]", "-", run_id)[:63].strip("-._")
    isvc = inference_service(
        name, storage_uri, cfg, pool=pool, labels=labels, annotations=annotations
    )
    header = (
        f"InferenceService of the {task} model ({serving.engine} {serving.precision}), written "
        "by the pipeline's serve step.\nApply with: make deploy-model RUN=<this file> "
        f"[NAMESPACE={platform.NAMESPACE}]"
    )
    atomic_write_text(out, to_yaml([isvc], header))
    if notes is not None:
        atomic_write_text(notes, deploy_notes(isvc, source, platform.NAMESPACE))
    logger.info("InferenceService %s -> %s (%s, %s)", name, out, storage_uri, pool)
    result = {
        "name": name,
        "task": task,
        "pool": pool,
        "runtime": platform.SERVING_POOLS[pool].runtime,
        "storage_uri": storage_uri,
        "model_source": source,
        "engine": serving.engine,
        "precision": serving.precision,
        "min_replicas": cfg.min_replicas,
        "max_replicas": cfg.max_replicas,
    }
    return summarize("serve", result, profile=profile, cfg=cfg)


__all__ = ["MODEL_SOURCE_ANNOTATION", "serve_manifest", "storage_uri_for"]
