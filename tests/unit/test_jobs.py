"""PaddleJob lifecycle (ppminilm.cluster.jobs) through the real kubeflow-training client.

Every test drives ``kubeflow.training.TrainingClient`` against the fake API server of
``tests/unit/fake_kube_api.py`` (HTTP on 127.0.0.1), which rejects objects the Training
Operator or the garbage collector could not work with (no owner, no TTL/deadline, a restart
policy that fails on pre-emption, ...) and records every request.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("kubeflow.training", reason="needs kubeflow-training")

from kubeflow.training import TrainingClient
from kubernetes import client as k8s

from ppminilm.cluster import jobs, platform
from ppminilm.cluster.paddlejob import PaddleJobError, PaddleJobSpec, build_paddlejob
from ppminilm.errors import EXIT_PREEMPTED, ConfigError
from tests.unit.fake_kube_api import fake_kube_api, write_kubeconfig

NS = "team-a"
RUN_ID = "5f1c2a9e-7d3b-4c1a-9e2f-0123456789ab"
BASE = "s3://ppminilm/runs/exp1"
ARGS = ["--corpus", f"{BASE}/inputs/corpus", "--out", f"{BASE}/student"]
POD_A = {"PPMINILM_POD_NAME": "run-distill-attempt-1", "PPMINILM_POD_UID": "uid-a"}
POD_B = {"PPMINILM_POD_NAME": "run-distill-attempt-2", "PPMINILM_POD_UID": "uid-b"}
#: Seconds the SIGTERM test waits for the child to create its job / to exit.
CHILD_TIMEOUT_S = 60


@pytest.fixture
def api():
    with fake_kube_api() as (state, host):
        config = k8s.Configuration()
        config.host = host
        client = TrainingClient(client_configuration=config, namespace=NS, job_kind="PaddleJob")
        yield state, host, client


def _pod(monkeypatch: pytest.MonkeyPatch, pod: dict[str, str]) -> None:
    for key, value in {**pod, "PPMINILM_POD_NAMESPACE": NS}.items():
        monkeypatch.setenv(key, value)


def _run(client, tmp_path: Path, **changes):
    kwargs = {
        "job_name": jobs.job_name(RUN_ID, BASE),
        "distill_args": ARGS,
        "workers": 2,
        "gpus_per_worker": 8,
        "run_id": RUN_ID,
        "checkpoint_uri": f"{BASE}/checkpoints",
        "polling_interval_s": 0.01,
        "client": client,
        **changes,
    }
    return jobs.run_distill_job(tmp_path / "record.json", **kwargs)


def test_launch_creates_a_checked_job_in_the_pods_namespace(api, tmp_path, monkeypatch) -> None:
    state, _, client = api
    _pod(monkeypatch, POD_A)
    record = _run(client, tmp_path)
    name = jobs.job_name(RUN_ID, BASE)
    assert state.problems == []
    assert record["action"] == "created"
    assert state.methods(name).count("POST") == 0  # POST goes to the collection
    assert [m for m, _, _ in state.requests].count("POST") == 1
    job = state.jobs[(NS, name)]
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": POD_A["PPMINILM_POD_NAME"],
            "uid": "uid-a",
            "controller": False,
            "blockOwnerDeletion": False,
        }
    ]
    assert job["metadata"]["labels"]["ppminilm.io/run-id"] == RUN_ID
    run_policy = job["spec"]["runPolicy"]
    assert run_policy["activeDeadlineSeconds"] == 604800
    assert run_policy["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["paddleReplicaSpecs"]["Worker"]["restartPolicy"] == "ExitCode"
    assert json.loads((tmp_path / "record.json").read_text())["status"]["conditions"][-1][
        "type"
    ] == ("Succeeded")


def test_workers_take_the_pods_service_account_and_the_compiled_image(
    api, tmp_path, monkeypatch
) -> None:
    """issue 13: the run's service account (standalone pipeline-runner, multi-user
    default-editor) and the image ``make compile IMAGE_REGISTRY=...`` wrote, not defaults."""
    state, _, client = api
    _pod(monkeypatch, POD_A)
    image = "registry.example.com/ml/ppminilm-gpu-train:rc1@sha256:" + "b" * 64
    monkeypatch.setenv(jobs.POD_SERVICE_ACCOUNT_ENV, "default-editor")
    monkeypatch.setenv(jobs.WORKER_IMAGE_ENV, image)
    _run(client, tmp_path)
    pod = state.jobs[(NS, jobs.job_name(RUN_ID, BASE))]["spec"]["paddleReplicaSpecs"]["Worker"][
        "template"
    ]["spec"]
    assert pod["serviceAccountName"] == "default-editor"
    assert pod["containers"][0]["image"] == image
    assert jobs.POD_FIELD_PATHS[jobs.POD_SERVICE_ACCOUNT_ENV] == "spec.serviceAccountName"


def test_without_pod_account_or_image_env_the_defaults_apply(api, tmp_path, monkeypatch) -> None:
    state, _, client = api
    _pod(monkeypatch, POD_A)
    monkeypatch.delenv(jobs.POD_SERVICE_ACCOUNT_ENV, raising=False)
    monkeypatch.delenv(jobs.WORKER_IMAGE_ENV, raising=False)
    _run(client, tmp_path, image="")
    pod = state.jobs[(NS, jobs.job_name(RUN_ID, BASE))]["spec"]["paddleReplicaSpecs"]["Worker"][
        "template"
    ]["spec"]
    assert pod["serviceAccountName"] == PaddleJobSpec.service_account
    assert pod["containers"][0]["image"] == platform.GPU_TRAIN_IMAGE


def test_a_retried_step_adopts_the_job_and_becomes_its_owner(api, tmp_path, monkeypatch) -> None:
    state, _, client = api
    state.succeed_after_reads = 3
    name = jobs.job_name(RUN_ID, BASE)
    # First attempt: what its step does before it waits (then its pod dies).
    _pod(monkeypatch, POD_A)
    first = jobs.PodIdentity.from_environment()
    assert first is not None
    manifest = build_paddlejob(
        PaddleJobSpec(name=name, distill_args=tuple(ARGS), labels={"ppminilm.io/checkpoint": "k"}),
        NS,
        first.owner_reference(),
    )
    runner = jobs.JobRunner(client, NS, polling_interval_s=0.01)
    assert runner.launch(manifest, first)["action"] == "created"
    state._advance((NS, name))  # the operator starts it
    # Second attempt, another pod: same run id -> same name -> adopted, no 409.
    _pod(monkeypatch, POD_B)
    record = _run(client, tmp_path)
    assert record["action"] == "adopted"
    assert [m for m, _, _ in state.requests].count("POST") == 1
    assert "PATCH" in state.methods(name)
    (owner,) = state.jobs[(NS, name)]["metadata"]["ownerReferences"]
    assert (owner["name"], owner["uid"]) == (POD_B["PPMINILM_POD_NAME"], "uid-b")
    assert state.problems == []


def test_a_finished_job_of_the_run_is_adopted_not_rerun(api, tmp_path, monkeypatch) -> None:
    state, _, client = api
    _pod(monkeypatch, POD_A)
    _run(client, tmp_path)
    _pod(monkeypatch, POD_B)
    again = _run(client, tmp_path)
    assert again["action"] == "adopted"
    assert [m for m, _, _ in state.requests].count("POST") == 1


def test_a_failed_job_of_the_run_is_replaced(api, tmp_path, monkeypatch) -> None:
    state, _, client = api
    _pod(monkeypatch, POD_A)
    state.fail = True
    with pytest.raises(PaddleJobError, match=r"failed.*kubectl -n team-a describe paddlejob"):
        _run(client, tmp_path)
    state.fail = False
    _pod(monkeypatch, POD_B)
    record = _run(client, tmp_path)
    assert record["action"] == "recreated"
    methods = [m for m, _, _ in state.requests]
    assert methods.count("POST") == 2 and "DELETE" in methods
    assert methods.index("DELETE") < len(methods) - 1 - methods[::-1].index("POST")


def test_another_runs_active_job_on_the_same_checkpoints_is_refused(
    api, tmp_path, monkeypatch
) -> None:
    state, _, client = api
    state.succeed_after_reads = None
    _pod(monkeypatch, POD_A)
    other = jobs.job_name("another-run", BASE)
    runner = jobs.JobRunner(client, NS, polling_interval_s=0.01)
    key = jobs.checkpoint_key(f"{BASE}/checkpoints")
    spec = PaddleJobSpec(name=other, labels={"ppminilm.io/checkpoint": key})
    runner.launch(
        build_paddlejob(spec, NS, jobs.PodIdentity.from_environment().owner_reference()), None
    )
    with pytest.raises(ConfigError, match=rf"{other}.*still active on the same checkpoint_uri"):
        _run(client, tmp_path)
    assert [m for m, _, _ in state.requests].count("POST") == 1


def test_timeout_deletes_the_job(api, monkeypatch) -> None:
    state, _, client = api
    state.succeed_after_reads = None
    _pod(monkeypatch, POD_A)
    owner = jobs.PodIdentity.from_environment()
    name = jobs.job_name(RUN_ID, BASE)
    spec = PaddleJobSpec(name=name, labels={"ppminilm.io/checkpoint": "k"})
    runner = jobs.JobRunner(client, NS, polling_interval_s=0.01)
    with pytest.raises(PaddleJobError, match="did not succeed within"):
        runner.run(build_paddlejob(spec, NS, owner.owner_reference()), owner, timeout_s=0.05)
    assert (NS, name) not in state.jobs and "DELETE" in state.methods(name)


@pytest.mark.integration  # a child interpreter
def test_sigterm_deletes_the_job_and_exits_143(api, tmp_path) -> None:
    state, host, _ = api
    state.succeed_after_reads = None
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", host, NS)
    script = textwrap.dedent(
        f"""
        from ppminilm.cluster import jobs, platform
        jobs.run_distill_job(
            {str(tmp_path / "record.json")!r}, job_name={jobs.job_name(RUN_ID, BASE)!r},
            distill_args={ARGS!r}, workers=2, gpus_per_worker=8, run_id={RUN_ID!r},
            checkpoint_uri={BASE + "/checkpoints"!r}, polling_interval_s=0.05,
        )
        """
    )
    env = {**os.environ, **POD_A, "PPMINILM_POD_NAMESPACE": NS, "KUBECONFIG": str(kubeconfig)}
    child = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True
    )
    name = jobs.job_name(RUN_ID, BASE)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline and state.methods(name).count("GET") < 3:
        assert child.poll() is None, child.stderr.read() if child.stderr else ""
        time.sleep(0.05)
    assert (NS, name) in state.jobs, "the child never created its job"
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=CHILD_TIMEOUT_S)
    assert child.returncode == EXIT_PREEMPTED, err[-3000:]
    assert (NS, name) not in state.jobs and "DELETE" in state.methods(name)
    assert state.problems == []


def test_job_names_carry_the_run_and_fit_a_label() -> None:
    name = jobs.job_name(RUN_ID, BASE)
    assert name.startswith("ppminilm-distill-5f1c2a9e") and len(name) <= 48
    assert name == jobs.job_name(RUN_ID, BASE + "/")
    assert jobs.job_name("other-run", BASE) != name
    assert jobs.job_name(RUN_ID, BASE + "2") != name
    assert jobs.job_name("", BASE).startswith("ppminilm-distill-")
    PaddleJobSpec(name=name)  # a valid DNS label


def test_namespace_comes_from_the_pod(tmp_path: Path) -> None:
    assert jobs.current_namespace({"PPMINILM_POD_NAMESPACE": "ns1"}) == "ns1"
    sa = tmp_path / "namespace"
    sa.write_text("ns2\n")
    assert jobs.current_namespace({}, sa) == "ns2"
    with pytest.raises(ConfigError, match="PPMINILM_POD_NAMESPACE"):
        jobs.current_namespace({}, tmp_path / "missing")
    assert jobs.PodIdentity.from_environment({"PPMINILM_POD_NAME": "p"}) is None


def test_namespace_other_than_the_owners_is_refused(api, tmp_path, monkeypatch) -> None:
    _, _, client = api
    _pod(monkeypatch, POD_A)
    with pytest.raises(ConfigError, match="ownerReference only works within one namespace"):
        _run(client, tmp_path, namespace="elsewhere")
