"""`make submit`: argument checks before any HTTP call, backend floor, idempotent pipeline +
version upload, exact experiment match, namespaces per install type, --wait, against a strict
fake of the KFP v2beta1 API."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines import submit
from ppminilm.cluster import platform
from tests.pipelines.fake_kfp_server import FakeKfpServer, model_problems

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_PACKAGE = ROOT / "pipelines" / "compiled" / "ppminilm-cluster.yaml"
TOKEN = "test-token-not-a-secret"
URIS = {
    "corpus_uri": "s3://ppminilm/inputs/corpus/",
    "vocab_uri": "s3://ppminilm/inputs/vocab/",
    "teacher_uri": "s3://ppminilm/inputs/roberta-wwm-ext-large/",
}


def _submit(server: FakeKfpServer, *extra: str, arguments: dict | None = None) -> int:
    args = ["--host", server.url, "--experiment", "ci", "--run-name", "r1", "--poll", "0.01"]
    return submit.main([*args, "--arguments", json.dumps(URIS if arguments is None else arguments),
                        *extra])  # fmt: skip


def test_cluster_preset_submits_the_seed_recipe(capsys):
    with FakeKfpServer() as server:
        assert _submit(server) == 0, server.errors
    assert server.errors == []
    (run,) = server.runs.values()
    body = run["request"]
    params = body["runtime_config"]["parameters"]
    assert {k: params[k] for k in URIS} == URIS
    assert params["checkpoint_uri"] == f"s3://{platform.S3_BUCKET}/checkpoints/r1/distill"
    # the seed recipe itself comes from the cluster package's defaults, not from the request
    defaults = next(yaml.safe_load_all(CLUSTER_PACKAGE.read_text()))["root"]["inputDefinitions"]
    assert defaults["parameters"]["use_gpu"]["defaultValue"] is True
    assert len(defaults["parameters"]["tasks"]["defaultValue"]) == 7
    assert "service_account" not in body  # the install's default (bound in manifests/)
    assert "pipeline_spec" not in body and body["pipeline_version_reference"]["pipeline_version_id"]
    (pipeline,) = server.pipelines.values()
    assert pipeline["display_name"] == "ppminilm"
    names = sorted(v["display_name"] for v in server.versions.values())
    assert names[0] == "ppminilm" and names[1].startswith("ppminilm-") and len(names) == 2
    assert f"{server.url}/#/runs/details/{run['run_id']}" in capsys.readouterr().out


def test_second_submit_of_the_same_revision_reuses_pipeline_version_and_experiment():
    with FakeKfpServer() as server:
        # a similarly named experiment must not be taken for ours
        server.experiments["x"] = {"experiment_id": "x", "display_name": "ci-old", "namespace": ""}
        assert _submit(server) == 0
        assert _submit(server, "--run-name", "r2") == 0, server.errors
    assert server.errors == []
    assert len(server.pipelines) == 1 and len(server.versions) == 2
    assert sorted(e["display_name"] for e in server.experiments.values()) == ["ci", "ci-old"]
    runs = list(server.runs.values())
    assert len(runs) == 2
    refs = {json.dumps(r["pipeline_version_reference"], sort_keys=True) for r in runs}
    assert len(refs) == 1, "both runs use the same pipeline version"
    uploads = [r for r in server.requests if r["path"].endswith("/upload_version")]
    assert len(uploads) == 1


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({**URIS, "use_gpus": True}, "'use_gpus' (did you mean 'use_gpu'?)"),
        ({**URIS, "use_gpu": "yes"}, "'use_gpu'='yes' is a str"),
        ({**URIS, "distill_nodes": 2.5}, "'distill_nodes'=2.5"),
        ({**URIS, "tasks": ["tnews", "cola"]}, "tasks="),
        ({**URIS, "grid": [{"batch_size": 16}]}, "grid[0]"),
        ({**URIS, "overrides": {"finetune": {"epochz": 3}}}, "overrides"),
        ({**URIS, "profile": "laptop"}, "profile='laptop'"),
        ({**URIS, "corpus_uri": "/data/corpus"}, "corpus_uri='/data/corpus'"),
        ({k: v for k, v in URIS.items() if k != "teacher_uri"}, "teacher_uri"),
        # issue 21: 0.6 of the cluster student's 12 heads is 7.2 heads
        ({**URIS, "widths": [0.75, 0.6]}, "widths has 0.6: it keeps 7.2 of the 12 attention"),
        ({**URIS, "widths": [0.5, 0.5]}, "lists width 0.5 twice"),
        ({**URIS, "accuracy_budget": -1.0}, "accuracy_budget=-1.0"),
    ],
)
def test_bad_arguments_exit_2_naming_the_key_before_any_request(arguments, named, caplog):
    with FakeKfpServer() as server:
        assert _submit(server, arguments=arguments) == submit.EXIT_USAGE
    assert server.requests == [], "nothing may be sent before the arguments are checked"
    assert named in caplog.text


def test_local_preset_needs_no_uris_and_bad_json_is_a_usage_error():
    with FakeKfpServer() as server:
        assert _submit(server, "--preset", "local", arguments={}) == 0, server.errors
        assert submit.main(["--host", server.url, "--arguments", "{oops"]) == submit.EXIT_USAGE
        assert submit.main(["--host", server.url, "--arguments", "[1]"]) == submit.EXIT_USAGE
    (run,) = server.runs.values()
    assert run["request"]["runtime_config"].get("parameters") in (None, {})


def test_missing_host_and_package_are_usage_errors(monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert submit.main(["--arguments", json.dumps(URIS)]) == submit.EXIT_USAGE
    assert (
        submit.main(["--host", "http://127.0.0.1:9", "--package", "nope.yaml"]) == submit.EXIT_USAGE
    )


def test_backend_below_the_floor_is_refused_with_the_reason(caplog):
    with FakeKfpServer(version="2.15.1") as server:
        assert _submit(server) == submit.EXIT_BACKEND
    assert [r["path"] for r in server.requests] == ["/apis/v2beta1/healthz"]
    assert "2.15.1 is older than 2.16.0" in caplog.text and "securityContext" in caplog.text


def test_multi_user_runs_in_the_profile_namespace():
    with FakeKfpServer(multi_user=True) as server:
        assert _submit(server) == 0, server.errors
        assert _submit(server, "--namespace", "someone-else") == submit.EXIT_INFRA
    exps = [e for e in server.experiments.values()]
    assert [e["namespace"] for e in exps] == [platform.NAMESPACE]
    (pipeline,) = server.pipelines.values()
    assert pipeline["namespace"] == platform.NAMESPACE
    assert any("not a profile namespace" in e for e in server.errors)


@pytest.mark.parametrize(
    ("states", "code", "word"),
    [
        (["PENDING", "RUNNING", "SUCCEEDED"], 0, "SUCCEEDED"),
        (["PENDING", "RUNNING", "FAILED"], submit.EXIT_RUN_FAILED, "FAILED"),
    ],
)
def test_wait_exits_by_the_final_state(states, code, word, capsys):
    with FakeKfpServer() as server:
        server.run_states = states
        assert _submit(server, "--wait") == code
    assert f"{word}" in capsys.readouterr().out
    (run,) = server.runs.values()
    assert run["state"] == word and run["polls"] >= 2


def test_wait_timeout():
    with FakeKfpServer() as server:
        server.run_states = ["RUNNING"]
        assert _submit(server, "--wait", "--timeout", "0") == submit.EXIT_WAIT_TIMEOUT


def test_token_sent_as_bearer_and_never_printed(monkeypatch, capsys, caplog):
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    with FakeKfpServer() as server:
        assert _submit(server) == 0
    assert all(
        {k.lower(): v for k, v in r["headers"].items()}.get("authorization") == f"Bearer {TOKEN}"
        for r in server.requests
    )
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text


def test_unreachable_server_is_an_infrastructure_error():
    # Port 9 (discard) on loopback: nothing listens there.
    code = submit.main(["--host", "http://127.0.0.1:9", "--arguments", json.dumps(URIS)])
    assert code == submit.EXIT_INFRA


def test_fake_server_checks_bodies_against_the_api_models():
    assert model_problems({"display_name": "x", "namespace": "n"}, "V2beta1Experiment", "e") == []
    bad = model_problems({"display_name": 3, "nmespace": "n"}, "V2beta1Experiment", "e")
    assert any("display_name" in p for p in bad) and any("nmespace" in p for p in bad)
    run = {"runtime_config": {"parameters": {"a": 1}, "pipelineRoot": "s3://x"}}
    assert any("pipelineRoot" in p for p in model_problems(run, "V2beta1Run", "run"))


def test_make_submit_target():
    """`make submit` compiles then submits the cluster preset (dry check of the recipe)."""
    out = subprocess.run(
        ["make", "-n", "submit"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, "KFP_HOST": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert out.returncode == 0
    assert "pipelines.compile" in out.stdout and "pipelines.submit" in out.stdout
