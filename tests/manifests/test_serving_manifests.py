"""Checks of manifests/serving/: it builds, its core objects validate against the Kubernetes
schemas and its ServingRuntimes against the KServe SDK's API models, it agrees with
ppminilm.cluster.platform and with what the serve step's InferenceServices name, and the
runtimes file is what ``make compile`` generates."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.compile import SERVING_RUNTIMES_YAML, serving_runtimes_yaml
from ppminilm.cluster import platform
from ppminilm.serving.deploy import serving_runtimes
from tests.manifests.kserve_schema import object_problems
from tests.manifests.test_manifests import (
    MANIFESTS,
    REPO,
    find,
    kustomize_build,
    lint_problems,
    schema_problems,
    staged_copy,
)

SERVING = "serving"
SERVING_ENV = "serving/serving-s3.env"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = staged_copy(tmp_path_factory.mktemp("manifests") / "manifests")
    return kustomize_build(root / SERVING)


def test_builds_runtimes_account_and_secret_without_a_namespace(built) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in built)
    assert kinds == sorted(
        [
            *[("ServingRuntime", pool.runtime) for pool in platform.SERVING_POOLS.values()],
            ("ServiceAccount", platform.SERVING_SERVICE_ACCOUNT),
            ("Secret", platform.SERVING_S3_SECRET),
        ]
    )
    # Applied with `kubectl apply -n NAMESPACE` (make deploy-model): no namespace baked in.
    assert all("namespace" not in o["metadata"] for o in built)
    assert all(o["metadata"]["labels"]["app.kubernetes.io/part-of"] == "ppminilm" for o in built)


def test_core_objects_match_the_kubernetes_schema(built) -> None:
    assert schema_problems([o for o in built if o["kind"] != "ServingRuntime"]) == []


def test_runtimes_match_the_kserve_api_models(built) -> None:
    runtimes = [o for o in built if o["kind"] == "ServingRuntime"]
    assert [p for o in runtimes for p in object_problems(o)] == []


def test_the_checker_can_fail() -> None:
    runtime = serving_runtimes()[0]
    runtime["spec"]["containers"][0]["imagePullPolice"] = "Always"
    runtime["spec"]["supportedModelFormats"][0]["autoSelect"] = "yes"
    assert len(object_problems(runtime)) == 2


def test_secret_and_account_are_what_kserve_reads(built) -> None:
    secret = find(built, "Secret", platform.SERVING_S3_SECRET)
    assert set(secret["data"]) == set(platform.SERVING_S3_SECRET_KEYS)
    notes = secret["metadata"]["annotations"]
    assert (
        notes["serving.kserve.io/s3-endpoint"] == f"{platform.MINIO_SERVICE}:{platform.MINIO_PORT}"
    )
    storage = yaml.safe_load((MANIFESTS / "base/storage-config.yaml").read_text())
    assert notes["serving.kserve.io/s3-region"] == storage["data"]["AWS_REGION"]
    assert notes["serving.kserve.io/s3-usehttps"] == "0"  # the in-cluster MinIO speaks HTTP
    account = find(built, "ServiceAccount", platform.SERVING_SERVICE_ACCOUNT)
    assert account["secrets"] == [{"name": platform.SERVING_S3_SECRET}]


def test_runtimes_agree_with_the_pools(built) -> None:
    for pool in platform.SERVING_POOLS.values():
        runtime = find(built, "ServingRuntime", pool.runtime)
        (container,) = runtime["spec"]["containers"]
        assert container["image"] == pool.image
        assert container["args"][container["args"].index("--device") + 1] == pool.device
        assert container["ports"] == [
            {"containerPort": platform.SERVING_HTTP_PORT, "protocol": "TCP"}
        ]
        assert container["resources"]["requests"] == container["resources"]["limits"]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpus == "1") == (pool.node_pool is not None)
        (fmt,) = runtime["spec"]["supportedModelFormats"]
        assert fmt["name"] == platform.SERVING_MODEL_FORMAT
        assert set(runtime["spec"]["protocolVersions"]) == {"v1", "v2"}
    assert platform.SERVING_POOLS["cpu"].image == platform.CPU_IMAGE
    assert platform.SERVING_POOLS["t4"].image == platform.GPU_INFER_IMAGE
    assert platform.SERVING_POOLS["t4"].node_pool == platform.T4_POOL


def test_runtimes_file_is_what_make_compile_writes() -> None:
    assert SERVING_RUNTIMES_YAML.read_text(encoding="utf-8") == serving_runtimes_yaml(), (
        "manifests/serving/serving-runtimes.yaml is stale: run `make compile`"
    )


def test_yamllint_and_the_env_file_is_ignored() -> None:
    assert lint_problems(MANIFESTS / SERVING) == []
    proc = subprocess.run(
        ["git", "check-ignore", "-q", str(MANIFESTS / SERVING_ENV)], cwd=REPO, check=False
    )
    assert proc.returncode == 0, f"manifests/{SERVING_ENV} must be git-ignored"
    example = (MANIFESTS / f"{SERVING_ENV}.example").read_text()
    keys = [ln.split("=")[0] for ln in example.splitlines() if ln and not ln.startswith("#")]
    assert keys == list(platform.SERVING_S3_SECRET_KEYS)


def test_readme_documents_the_serving_manifests() -> None:
    text = (MANIFESTS / "README.md").read_text() + (Path(REPO) / "README.md").read_text()
    for needle in ("manifests/serving", "make deploy-model", platform.SERVING_SERVICE_ACCOUNT):
        assert needle in text, needle
