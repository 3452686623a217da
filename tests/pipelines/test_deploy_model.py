"""``make deploy-model``: a local run's model is published to its storageUri (a real S3 API,
moto), then kubectl applies manifests/serving and the InferenceService, in that order."""

from __future__ import annotations

import json
import stat
import sys
import uuid
from pathlib import Path

import minio
import pytest
import yaml

from pipelines import deploy_model
from ppminilm import storage
from ppminilm.modeling.export import ServingConfig, write_serving_config
from ppminilm.runner.serve import serve_manifest


@pytest.fixture
def tiny_deployable(tmp_path: Path) -> Path:
    """A deployable dir as far as deploying looks at it (serving.json, non-empty model
    files): the tool publishes and applies, it never opens the model."""
    model = tmp_path / "deployable"
    model.mkdir()
    write_serving_config(
        model, ServingConfig(max_seq_len=32, labels=["0", "1"], task="local_reviews")
    )
    for name in ("inference.pdmodel", "inference.pdiparams", "vocab.txt"):
        (model / name).write_bytes(b"x")
    return model


@pytest.fixture
def fake_kubectl(tmp_path: Path) -> tuple[Path, Path]:
    """A kubectl that records its arguments (and the files it is asked to apply)."""
    log = tmp_path / "kubectl.log"
    script = tmp_path / "kubectl"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(log)!r}, 'a') as f: f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


@pytest.fixture
def serving_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    env = tmp_path / "serving-s3.env"
    env.write_text("AWS_ACCESS_KEY_ID=x\nAWS_SECRET_ACCESS_KEY=y\n")
    monkeypatch.setattr(deploy_model, "SERVING_ENV", env)
    return env


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_local_run_model_is_published_then_applied(
    tiny_deployable: Path, tmp_path: Path, s3_env, fake_kubectl, serving_env, monkeypatch
) -> None:
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    minio.Minio(
        s3_env.endpoint, s3_env.access_key, s3_env.secret_key, secure=False, region="us-east-1"
    ).make_bucket(bucket)
    monkeypatch.setattr("ppminilm.runner.serve.LOCAL_MODELS_PREFIX", f"s3://{bucket}/models")
    run = tmp_path / "run"
    serve_manifest(tiny_deployable, run / "serving" / "ppminilm-local-reviews.yaml", run_id="r1")
    kubectl, log = fake_kubectl
    code = deploy_model.main([str(run), "--namespace", "team-a", "--kubectl", str(kubectl)])
    assert code == 0
    uri = f"s3://{bucket}/models/ppminilm-local-reviews/r1"
    uploaded = {u.rsplit("/", 1)[-1] for u in storage.list_uris(uri)}
    assert {"serving.json", "inference.pdmodel", "inference.pdiparams", "vocab.txt"} <= uploaded
    calls = _calls(log)
    assert calls[0] == ["apply", "-n", "team-a", "-k", str(deploy_model.SERVING_DIR)]
    assert calls[1][:4] == ["apply", "-n", "team-a", "-f"]
    applied = yaml.safe_load(Path(calls[1][4]).read_text())
    assert applied["spec"]["predictor"]["model"]["storageUri"] == uri


def test_wait_dry_run_and_refusals(
    tiny_deployable: Path, tmp_path: Path, fake_kubectl, serving_env
) -> None:
    kubectl, log = fake_kubectl
    isvc = tmp_path / "isvc.yaml"
    serve_manifest(tiny_deployable, isvc, model_uri="s3://bucket/run/deployable")
    assert deploy_model.main([str(isvc), "--kubectl", str(kubectl), "--dry-run"]) == 0
    assert not log.exists()  # dry run: nothing applied
    assert deploy_model.main([str(isvc), "--kubectl", str(kubectl), "--wait"]) == 0
    wait = _calls(log)[-1]
    assert wait[:4] == ["wait", "-n", "ppminilm", "--for=condition=Ready"]
    assert wait[4] == "inferenceservice/ppminilm-local-reviews"
    assert deploy_model.main([str(tmp_path / "nothing"), "--kubectl", str(kubectl)]) == 2
    (tmp_path / "not-isvc.yaml").write_text("kind: Pod\n")
    assert deploy_model.main([str(tmp_path / "not-isvc.yaml"), "--kubectl", str(kubectl)]) == 2
    serving_env.unlink()
    assert deploy_model.main([str(isvc), "--kubectl", str(kubectl)]) == 2  # no credentials file
