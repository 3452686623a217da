"""`make submit` path: compile, then create a run on a (fake) KFP API server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import submit
from tests.pipelines.fake_kfp_server import FakeKfpServer

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipelines" / "compiled" / "ppminilm.yaml"
TOKEN = "test-token-not-a-secret"


def test_submit_creates_experiment_and_run(capsys):
    with FakeKfpServer() as server:
        code = submit.main(
            [
                "--host",
                server.url,
                "--namespace",
                "team-a",
                "--experiment",
                "ci",
                "--package",
                str(PACKAGE),
                "--run-name",
                "r1",
                "--arguments",
                json.dumps({"tasks": ["tnews"]}),
            ]
        )
    assert code == 0, server.errors
    assert server.errors == []
    out = capsys.readouterr().out
    run_id = next(iter(server.runs))
    assert f"{server.url}/#/runs/details/{run_id}" in out
    run = server.runs[run_id]["request"]
    assert run["display_name"] == "r1"
    assert run["service_account"] == "pipeline-runner"  # RBAC from manifests/
    assert server.experiments[run["experiment_id"]]["display_name"] == "ci"
    params = run["runtime_config"]["parameters"]
    assert params["tasks"] == ["tnews"]  # explicit argument wins
    assert params["profile"] == "cluster" and params["use_gpu"] is True
    assert len(params["grid"]) == 9
    pipeline_doc, platform_doc = yaml.safe_load_all(PACKAGE.read_text())
    sent = run["pipeline_spec"]["pipeline_spec"]
    assert sent["pipelineInfo"] == pipeline_doc["pipelineInfo"]
    assert sent["components"].keys() == pipeline_doc["components"].keys()
    assert sent["root"]["inputDefinitions"] == pipeline_doc["root"]["inputDefinitions"]
    assert run["pipeline_spec"]["platform_spec"] == platform_doc


def test_token_sent_as_bearer_and_never_printed(monkeypatch, capsys, caplog):
    monkeypatch.setenv("KFP_TOKEN", TOKEN)
    with FakeKfpServer() as server:
        assert submit.main(["--host", server.url, "--package", str(PACKAGE)]) == 0
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert posts and all(
        {k.lower(): v for k, v in r["headers"].items()}.get("authorization") == f"Bearer {TOKEN}"
        for r in posts
    )
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text


def test_missing_host_and_bad_arguments(monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert submit.main(["--package", str(PACKAGE)]) == submit.EXIT_USAGE
    assert (
        submit.main(["--host", "http://127.0.0.1:9", "--arguments", "{oops"]) == submit.EXIT_USAGE
    )
    assert (
        submit.main(["--host", "http://127.0.0.1:9", "--package", "nope.yaml"]) == submit.EXIT_USAGE
    )


def test_unreachable_server_is_an_infrastructure_error():
    # Port 9 (discard) on loopback: nothing listens there.
    assert (
        submit.main(["--host", "http://127.0.0.1:9", "--package", str(PACKAGE)])
        == submit.EXIT_INFRA
    )


@pytest.mark.parametrize("target", ["submit"])
def test_make_submit_target(target):
    """`make submit` compiles then submits (dry check of the recipe, no server)."""
    out = subprocess.run(
        ["make", "-n", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "KFP_HOST": "http://127.0.0.1:9"},
    )
    assert out.returncode == 0
    assert "pipelines.compile" in out.stdout and "pipelines.submit" in out.stdout
    assert sys.executable  # the recipe uses the venv's python
