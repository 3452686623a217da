"""ppminilm.cluster.paddlejob: spec validation and the PaddleJob manifest. No cluster, no SDK calls
that reach one (only the SDK's local deserialisation, when it is installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppminilm.cluster import paddlejob, platform
from ppminilm.cluster.paddlejob import PaddleJobSpec, build_paddlejob

ARGS = ("--corpus", "s3://ppminilm/corpus", "--output", "s3://ppminilm/student")


def worker(job: dict) -> dict:
    return job["spec"]["paddleReplicaSpecs"]["Worker"]


def container(job: dict) -> dict:
    (only,) = worker(job)["template"]["spec"]["containers"]
    return only


def test_defaults_build_a_v100_paddlejob() -> None:
    spec = PaddleJobSpec(name="distill-1", distill_args=ARGS)
    job = build_paddlejob(spec)
    assert job["apiVersion"] == "kubeflow.org/v1"
    assert job["kind"] == "PaddleJob"
    assert job["metadata"]["namespace"] == platform.NAMESPACE
    assert list(job["spec"]["paddleReplicaSpecs"]) == ["Worker"]
    assert worker(job)["replicas"] == spec.workers
    pod = worker(job)["template"]["spec"]
    assert pod["nodeSelector"] == platform.V100_POOL.node_selector
    assert pod["tolerations"] == [
        {
            "key": platform.V100_POOL.taint_key,
            "operator": "Equal",
            "value": platform.V100_POOL.taint_value,
            "effect": platform.V100_POOL.taint_effect,
        }
    ]
    c = container(job)
    assert c["name"] == "paddle"
    assert c["image"] == platform.GPU_TRAIN_IMAGE
    gpu = platform.V100_POOL.gpu_resource
    assert c["resources"]["limits"][gpu] == str(spec.gpus_per_worker)
    assert c["resources"]["requests"][gpu] == c["resources"]["limits"][gpu]
    assert {"name": "master", "containerPort": 37777, "protocol": "TCP"} in c["ports"]


def test_command_runs_the_launch_wrapper_around_the_cli() -> None:
    spec = PaddleJobSpec(name="distill-1", distill_args=ARGS, workers=4, gpus_per_worker=2)
    command = container(build_paddlejob(spec))["command"]
    assert command[:3] == ["python", "-m", "ppminilm.stages.distill.launch"]
    assert command[command.index("--nnodes") + 1] == "4"
    assert command[command.index("--nproc-per-node") + 1] == "2"
    assert tuple(command[command.index("--") + 1 :]) == ARGS
    # What the wrapper runs: Paddle's launcher around the CLI, with the same arguments.
    from ppminilm.stages.distill.launch import launcher_command

    inner = launcher_command(2, list(ARGS), log_dir=paddlejob.LAUNCH_LOG_DIR, nnodes=4)
    assert inner[1:3] == ["-m", "paddle.distributed.launch"]
    assert inner[-len(ARGS) - 3 : -len(ARGS)] == ["-m", "ppminilm", "distill"]


def test_lifecycle_fields() -> None:
    spec = PaddleJobSpec(
        name="distill-1",
        active_deadline_s=3600,
        ttl_after_finished_s=600,
        labels={paddlejob.RUN_ID_LABEL: "run-1"},
    )
    owner = paddlejob.owner_reference("step-pod", "uid-1")
    job = build_paddlejob(spec, "team-a", owner)
    assert job["metadata"]["namespace"] == "team-a"
    assert job["metadata"]["ownerReferences"] == [owner]
    assert owner["kind"] == "Pod" and owner["blockOwnerDeletion"] is False
    assert job["metadata"]["labels"][paddlejob.RUN_ID_LABEL] == "run-1"
    policy = job["spec"]["runPolicy"]
    assert policy["activeDeadlineSeconds"] == 3600 and policy["ttlSecondsAfterFinished"] == 600
    # Pre-emption (exit 143/137) restarts a worker; errors (1-127) fail the job.
    assert worker(job)["restartPolicy"] == "ExitCode"
    assert worker(job)["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    assert "ownerReferences" not in build_paddlejob(spec)["metadata"]
    with pytest.raises(ValueError, match="owner pod"):
        paddlejob.owner_reference("step-pod", "")


def test_shm_is_memory_backed() -> None:
    job = build_paddlejob(PaddleJobSpec(name="distill-1", shm_size="8Gi"))
    pod = worker(job)["template"]["spec"]
    (volume,) = pod["volumes"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert {"name": volume["name"], "mountPath": "/dev/shm"} in container(job)["volumeMounts"]


def test_credentials_come_from_the_secret_only() -> None:
    spec = PaddleJobSpec(name="distill-1", env={"NCCL_DEBUG": "INFO"})
    env = {e["name"]: e for e in container(build_paddlejob(spec))["env"]}
    for env_name, key in platform.S3_SECRET_KEYS.items():
        assert env[env_name] == {
            "name": env_name,
            "valueFrom": {"secretKeyRef": {"name": platform.S3_SECRET_NAME, "key": key}},
        }
    assert env["NCCL_DEBUG"] == {"name": "NCCL_DEBUG", "value": "INFO"}
    sources = container(build_paddlejob(spec))["envFrom"]
    assert sources == [{"configMapRef": {"name": paddlejob.STORAGE_CONFIGMAP, "optional": False}}]


def test_t4_pool_can_be_chosen() -> None:
    job = build_paddlejob(PaddleJobSpec(name="distill-1", node_pool="t4"))
    assert worker(job)["template"]["spec"]["nodeSelector"] == platform.T4_POOL.node_selector


def test_manifest_is_plain_json() -> None:
    job = build_paddlejob(PaddleJobSpec(name="distill-1", distill_args=ARGS))
    assert json.loads(json.dumps(job)) == job


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Distill_1"}, "name"),
        ({"name": "d" * (paddlejob.MAX_NAME_LEN + 1)}, "name"),
        ({"workers": 0}, "workers"),
        ({"workers": True}, "workers"),
        ({"gpus_per_worker": paddlejob.MAX_GPUS_PER_WORKER + 1}, "gpus_per_worker"),
        ({"image": "ghcr.io/ppminilm-kfp/ppminilm-gpu-train"}, "image"),
        ({"image": "ghcr.io/ppminilm-kfp/ppminilm-gpu-train:latest"}, "image"),
        ({"memory": "lots"}, "memory"),
        ({"node_pool": "a100"}, "node_pool"),
        ({"restart_policy": "Always"}, "restart_policy"),
        ({"env": {"MINIO_ROOT_PASSWORD": "hunter2"}}, "env"),
        ({"env": {"AWS_ACCESS_KEY_ID": "x"}}, "env"),
        ({"env": {"1BAD": "x"}}, "env"),
        ({"distill_args": ("ok", 3)}, "distill_args"),
        ({"active_deadline_s": 0}, "active_deadline_s"),
        ({"ttl_after_finished_s": -1}, "ttl_after_finished_s"),
        ({"labels": {"ppminilm.io/run-id": "not a label!"}}, "labels"),
    ],
)
def test_invalid_specs_are_rejected_naming_the_field(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"PaddleJobSpec\.{field}"):
        PaddleJobSpec(**{"name": "distill-1", **changes})


def test_image_digest_is_accepted() -> None:
    image = "registry.example/ppminilm-gpu-train@sha256:" + "0" * 64
    assert container(build_paddlejob(PaddleJobSpec(name="d", image=image)))["image"] == image


def test_bad_namespace_is_rejected() -> None:
    with pytest.raises(ValueError, match="namespace"):
        build_paddlejob(PaddleJobSpec(name="distill-1"), namespace="Not_A_Namespace")


def test_dict_round_trip_and_unknown_keys() -> None:
    spec = PaddleJobSpec(name="distill-1", distill_args=list(ARGS), workers=3)
    assert spec.distill_args == ARGS
    assert PaddleJobSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match=r"unknown key.*'nodes'"):
        PaddleJobSpec.from_dict({"name": "distill-1", "nodes": 2})


def test_save_job_record_writes_complete_json(tmp_path: Path) -> None:
    from ppminilm.cluster import jobs

    record = {"manifest": build_paddlejob(PaddleJobSpec(name="distill-1")), "status": {}}
    out = tmp_path / "out" / "record.json"
    jobs.save_job_record(record, out)
    assert json.loads(out.read_text()) == record
    assert [p.name for p in out.parent.iterdir()] == ["record.json"]


def test_job_runner_rejects_bad_polling() -> None:
    from ppminilm.cluster import jobs

    with pytest.raises(ValueError, match="polling_interval_s"):
        jobs.JobRunner(client=None, namespace="ns", polling_interval_s=0)


def test_manifest_deserialises_into_the_sdk_model() -> None:
    pytest.importorskip("kubeflow.training", reason=f"needs {paddlejob.SDK_REQUIREMENT}")
    from kubeflow.training import ApiClient, KubeflowOrgV1PaddleJob

    spec = PaddleJobSpec(name="distill-1", distill_args=ARGS, labels={"ppminilm.io/run-id": "r"})
    job = build_paddlejob(spec, owner=paddlejob.owner_reference("pod", "uid"))
    model = paddlejob.to_sdk_model(job)
    assert isinstance(model, KubeflowOrgV1PaddleJob)
    # Every field survives the SDK's typed model: no misspelled keys are silently dropped.
    assert ApiClient().sanitize_for_serialization(model) == job
