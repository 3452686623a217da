"""Fault cases of distillation checkpoints and their lease."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from faultmatrix.common import USER, _write
from faultmatrix.fixtures import Fixtures
from faultmatrix.runner import Call, case

# --------------------------------------------------------------------------- checkpoints


def _distill(fx: Fixtures, root: Path, ckpt: Path | str, *extra: str) -> list[str]:
    return [
        "distill", "--corpus", str(fx.copy("corpus", root / "corpus")),
        "--teacher", str(fx.copy("teacher", root / "teacher")), "--out", str(root / "student"),
        "--checkpoint-dir", str(ckpt), "--config", str(fx.get("distill-config")), *extra,
    ]  # fmt: skip


@case("checkpoint")
def checkpoint_dir_is_a_file(fx: Fixtures, root: Path) -> Call:
    ckpt = _write(root / "ckpt", "a file")
    return Call(_distill(fx, root, ckpt), [str(ckpt)], USER)


@case("checkpoint")
def checkpoint_only_one_corrupt(fx: Fixtures, root: Path) -> Call:
    ckpt = fx.copy("checkpoints", root / "ckpt")
    steps = sorted(p for p in ckpt.iterdir() if p.name.startswith("step-"))
    for old in steps[:-1]:
        shutil.rmtree(old)
    (steps[-1] / "model.pdparams").write_bytes(b"")
    return Call(_distill(fx, root, ckpt), [steps[-1].name], USER)


@case("checkpoint")
def checkpoint_every_one_corrupt(fx: Fixtures, root: Path) -> Call:
    ckpt = fx.copy("checkpoints", root / "ckpt")
    steps = sorted(p for p in ckpt.iterdir() if p.name.startswith("step-"))
    for step in steps:
        (step / "optimizer.pdopt").write_bytes(b"\x80\x04garbage")
    return Call(_distill(fx, root, ckpt), [steps[0].name, steps[-1].name], USER)


@case("checkpoint")
def checkpoint_wrong_shape_tensor(fx: Fixtures, root: Path) -> Call:
    """Resume with another tokenizer: same config, but the embedding table has another size.

    The student's vocabulary no longer matches the teacher's, which is refused before any
    checkpoint is read (naming both files).
    """
    ckpt = fx.copy("checkpoints", root / "ckpt")
    vocab = fx.copy("vocab", root / "vocab")
    extra = "".join(f"[unused{i}]\n" for i in range(10))
    (vocab / "vocab.txt").write_text((vocab / "vocab.txt").read_text("utf-8") + extra, "utf-8")
    argv = _distill(fx, root, ckpt, "--vocab", str(vocab))
    return Call(argv, [str(vocab / "vocab.txt"), "share a vocabulary"], USER)


@case("checkpoint")
def checkpoint_state_bad_json(fx: Fixtures, root: Path) -> Call:
    ckpt = fx.copy("checkpoints", root / "ckpt")
    steps = sorted(p for p in ckpt.iterdir() if p.name.startswith("step-"))
    for step in steps:
        (step / "trainer_state.json").write_text('{"step": 2,,}', encoding="utf-8")
    return Call(_distill(fx, root, ckpt), [f"{steps[-1].name}/trainer_state.json"], USER)


@case("checkpoint")
def checkpoint_other_config(fx: Fixtures, root: Path) -> Call:
    ckpt = fx.copy("checkpoints", root / "ckpt")
    return Call(_distill(fx, root, ckpt, "--learning-rate", "0.5"), ["learning_rate"], USER)


@case("checkpoint")
def checkpoint_dir_leased_by_another_run(fx: Fixtures, root: Path) -> Call:
    ckpt = fx.copy("checkpoints", root / "ckpt")
    lease = {
        "run": "another-run",
        "holder": "node-7:4242",
        "acquired": time.time(),
        "expires": time.time() + 3600,
    }
    _write(ckpt / "_LEASE", json.dumps(lease))
    return Call(_distill(fx, root, ckpt), [str(ckpt), "another-run"], USER)


@case("checkpoint")
def distill_corpus_without_shards(fx: Fixtures, root: Path) -> Call:
    argv = _distill(fx, root, root / "ckpt")
    corpus = Path(argv[argv.index("--corpus") + 1])
    (corpus / "part-00000.txt").unlink()
    return Call(argv, [str(corpus)], USER)


@case("checkpoint")
def distill_teacher_missing(fx: Fixtures, root: Path) -> Call:
    argv = _distill(fx, root, root / "ckpt")
    argv[argv.index("--teacher") + 1] = str(root / "no-teacher")
    return Call(argv, [str(root / "no-teacher")], USER)


@case("checkpoint")
def checkpoint_dir_under_a_file(fx: Fixtures, root: Path) -> Call:
    blocker = _write(root / "blocker", "a file")
    return Call(_distill(fx, root, blocker / "ckpt"), [str(blocker)], USER)


@case("checkpoint")
def checkpoint_remote_leased_by_another_run(fx: Fixtures, root: Path) -> Call:
    from faultmatrix.cases_storage import _bucket, _put, s3_env

    bucket = _bucket(fx.s3)
    lease = {"run": "run-b", "holder": "node-2:77", "expires": time.time() + 3600}
    _put(fx.s3, bucket, "ckpt/_LEASE", json.dumps(lease).encode())
    uri = f"s3://{bucket}/ckpt"
    argv = _distill(fx, root, uri)
    return Call(argv, [uri, "run-b"], USER, s3_env(fx.s3), [(fx.s3, bucket)])
