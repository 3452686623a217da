"""Multi-node distillation plumbing: the PaddleJob worker command runs against object storage.

The Training Operator cannot run here, so the job itself is not launched; what its workers
execute (``ppminilm distill`` with every input and output an ``s3://`` URI) runs for real
against the suite's moto S3 server, with the exact arguments the distill step gives the job.
"""

import json
import uuid
from pathlib import Path

import minio
import pytest

from ppminilm import storage
from ppminilm.cli import main
from ppminilm.modeling.saved import load_model
from ppminilm.runner import distill, paddlejob_distill_args
from tests.unit.test_distill import _cfg, tiny  # noqa: F401 -- fixture reused

#: Every test here trains a model or starts another interpreter (not in make test-fast).
pytestmark = pytest.mark.integration


def test_worker_command_reads_and_writes_object_storage(tiny, s3_env, capsys):  # noqa: F811
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    minio.Minio(
        s3_env.endpoint, s3_env.access_key, s3_env.secret_key, secure=False, region="us-east-1"
    ).make_bucket(bucket)
    base = f"s3://{bucket}/run1"
    # What the distill step stages before launching the PaddleJob:
    storage.upload_dir(tiny["corpus"], f"{base}/inputs/corpus")
    storage.upload_dir(tiny["vocab"], f"{base}/inputs/vocab")
    storage.upload_dir(tiny["teacher"], f"{base}/inputs/teacher")
    cfg = _cfg(max_steps=4, save_steps=2).to_dict()
    storage.write_json(f"{base}/inputs/distill_overrides.json", cfg)

    assert main(["distill", *paddlejob_distill_args(base, "local")]) == 0
    summary = json.loads(capsys.readouterr().out)["result"]
    assert summary["model_dir"] == f"{base}/student" and summary["steps"] == 4
    assert storage.list_uris(f"{base}/checkpoints"), "no checkpoint in object storage"
    local = Path(storage.local_copy(f"{base}/student", tiny["root"] / "downloaded"))
    _model, info = load_model(local)
    assert info.kind == "encoder" and info.arch.num_layers == cfg["student"]["num_layers"]


def test_multi_node_needs_an_object_store_prefix(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_uri to be an s3:// prefix"):
        distill(str(tmp_path), str(tmp_path / "s"), data=str(tmp_path), nodes=2, checkpoint_uri="")


def test_paddlejob_args_are_all_remote():
    args = paddlejob_distill_args("s3://b/run/", "cluster")
    values = dict(zip(args[::2], args[1::2], strict=True))
    assert values["--profile"] == "cluster"
    for flag in ("--corpus", "--vocab", "--teacher", "--config", "--checkpoint-dir", "--out"):
        assert values[flag].startswith("s3://b/run/"), flag
