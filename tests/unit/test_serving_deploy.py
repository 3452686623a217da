"""The InferenceService the serve step writes: valid against the KServe SDK's API models, on the
right pool and runtime, with storageUri in object storage and the serving service account, and
args that ``ppminilm serve`` reads after the runtime's."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from ppminilm.cli import build_parser
from ppminilm.cli.serve import serve_config
from ppminilm.cluster import platform
from ppminilm.config import ServeConfig
from ppminilm.errors import ConfigError
from ppminilm.modeling.saved import ModelFormatError
from ppminilm.runner.serve import LOCAL_MODELS_PREFIX, MODEL_SOURCE_ANNOTATION, serve_manifest
from ppminilm.serving.deploy import inference_service, isvc_name, runtime_args, serve_args
from tests.manifests.kserve_schema import object_problems

URI = "s3://ppminilm/pipeline-root/ppminilm/run-1/benchmark-3/deployable"


@pytest.mark.parametrize("pool", sorted(platform.SERVING_POOLS))
def test_inference_service_is_valid_kserve(pool: str) -> None:
    cfg = ServeConfig(min_replicas=2, max_replicas=5, max_batch_size=16)
    isvc = inference_service("ppminilm-local-reviews", URI, cfg, pool=pool, labels={"a": "b"})
    assert object_problems(isvc) == []
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == platform.SERVING_SERVICE_ACCOUNT
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 5)
    model = predictor["model"]
    assert model["storageUri"] == URI
    assert model["runtime"] == platform.SERVING_POOLS[pool].runtime
    assert model["modelFormat"]["name"] == platform.SERVING_MODEL_FORMAT
    assert model["resources"]["requests"] == model["resources"]["limits"]
    if pool == "t4":
        assert predictor["nodeSelector"] == platform.T4_POOL.node_selector
        assert predictor["tolerations"][0]["key"] == platform.T4_POOL.taint_key
        assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    else:
        assert "nodeSelector" not in predictor and "tolerations" not in predictor


def test_refusals() -> None:
    with pytest.raises(ValueError, match="object-store URI"):
        inference_service("x", "/local/dir", ServeConfig())
    with pytest.raises(ValueError, match="unknown serving pool"):
        inference_service("x", URI, ServeConfig(), pool="tpu")
    with pytest.raises(ConfigError, match="min_replicas=3 > max_replicas=2"):
        ServeConfig(min_replicas=3)
    with pytest.raises(ConfigError, match="engine='openvino' runs on device='cpu'"):
        ServeConfig(device="gpu", engine="openvino")


@pytest.mark.parametrize(
    ("task", "name"),
    [("local_reviews", "ppminilm-local-reviews"), ("AFQMC", "ppminilm-afqmc"),
     ("a" * 80, "ppminilm-" + "a" * 36)],
)  # fmt: skip
def test_names_are_dns_labels(task: str, name: str) -> None:
    assert isvc_name(task) == name


def test_runtime_then_model_args_parse_with_the_model_winning() -> None:
    """KServe appends the InferenceService's args to the runtime's; the last flag wins."""
    cfg = ServeConfig(max_batch_size=16, max_wait_ms=2.5, num_threads=4, engine="openvino")
    pool = platform.SERVING_POOLS["cpu"]
    argv = [*runtime_args(pool), *serve_args(cfg)]
    argv[argv.index("{{.Name}}")] = "ppminilm-x"
    args = build_parser().parse_args(argv)
    got = serve_config(args)
    assert (got.host, got.port, got.model_name) == ("0.0.0.0", 8080, "ppminilm-x")
    assert (got.max_batch_size, got.max_wait_ms, got.num_threads) == (16, 2.5, 4)
    assert got.engine == "openvino" and args.model_dir == platform.SERVING_MODEL_MOUNT
    assert shlex.join(argv)  # plain strings only


def test_serve_step_on_a_local_run(tiny_deployable: Path, tmp_path: Path) -> None:
    out, notes = tmp_path / "isvc.yaml", tmp_path / "notes.md"
    summary = serve_manifest(
        tiny_deployable, out, notes=notes, run_id="run 7", overrides={"serve": {"max_replicas": 3}}
    )
    (isvc,) = list(yaml.safe_load_all(out.read_text()))
    assert object_problems(isvc) == []
    name = isvc["metadata"]["name"]
    assert name == "ppminilm-local-reviews" and summary.result["name"] == name
    model = isvc["spec"]["predictor"]["model"]
    # A local artifact: the prefix make deploy-model uploads it to, and where it is now.
    assert model["storageUri"] == f"{LOCAL_MODELS_PREFIX}/{name}/run-7"
    annotations = isvc["metadata"]["annotations"]
    assert annotations[MODEL_SOURCE_ANNOTATION] == str(tiny_deployable.resolve())
    assert annotations["ppminilm.dev/engine"] == "paddle"
    assert isvc["metadata"]["labels"]["ppminilm.dev/run"] == "run-7"
    assert isvc["spec"]["predictor"]["maxReplicas"] == 3
    assert summary.metadata["storage_uri"] == model["storageUri"]
    text = notes.read_text()
    assert "make deploy-model" in text and "Authorization: Bearer" in text and name in text


def test_serve_step_on_a_cluster_artifact(tiny_deployable: Path, tmp_path: Path) -> None:
    out = tmp_path / "isvc.yaml"
    serve_manifest(tiny_deployable, out, model_uri="minio://mlpipeline/v2/artifacts/x/deployable/")
    (isvc,) = list(yaml.safe_load_all(out.read_text()))
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == (
        "s3://mlpipeline/v2/artifacts/x/deployable"  # KServe reads s3://, KFP writes minio://
    )
    assert MODEL_SOURCE_ANNOTATION not in isvc["metadata"]["annotations"]


def test_serve_step_refuses_what_it_cannot_serve(tiny_deployable: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError):
        serve_manifest(tmp_path, tmp_path / "isvc.yaml")
    with pytest.raises(ValueError, match="expected one of"):
        serve_manifest(tiny_deployable, tmp_path / "isvc.yaml", pool="tpu")
