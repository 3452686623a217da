"""Data from outside the built-in sources: task directories, object storage, air-gapped staging.

* :func:`import_task_dirs` -- the build-data step's third source: a task directory, a local
  directory of task directories, or an ``s3://`` prefix holding task directories (published
  whole with one ``_SUCCESS`` manifest, or each with its own). Every directory is validated
  (:func:`ppminilm.data.load_task_dir`, ``file:line:field`` errors) before it is used.
* :func:`stage_data` -- ``ppminilm data stage --to s3://...``: run where the internet is
  reachable, it publishes the CLUE tasks, a corpus, a vocabulary and a teacher in the layout
  the pipeline reads (``tasks/``, ``corpus/``, ``vocab/``, ``teacher/``), so a cluster without
  internet runs the recipe from object storage.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ppminilm.config import normalize_task
from ppminilm.data.taskdir import TASK_FILE
from ppminilm.errors import UserError
from ppminilm.io import copy_dir, is_remote
from ppminilm.runner.core import CORPUS_DIR, TASKS_DIR, VOCAB_DIR

logger = logging.getLogger(__name__)

#: Where ``data stage`` puts the teacher under its prefix.
TEACHER_DIR = "teacher"


def _local_task_dirs(root: Path) -> list[Path]:
    if (root / TASK_FILE).is_file():
        return [root]
    if not root.is_dir():
        raise UserError(
            f"data source {root}: no such directory (expected 'local', 'clue', a task "
            "directory, a directory of task directories or an s3:// prefix of them)"
        )
    found = sorted(p for p in root.iterdir() if (p / TASK_FILE).is_file())
    if not found and (root / TASKS_DIR).is_dir():  # a build-data artifact
        return _local_task_dirs(root / TASKS_DIR)
    if not found:
        raise UserError(
            f"data source {root}: no task directory in it (looked for {TASK_FILE} in {root} "
            "and in each sub-directory)"
        )
    return found


def _fetch_remote(prefix: str, work: Path) -> Path:
    """Download an object-store prefix of task directories into ``work``; return the root."""
    from ppminilm import storage

    base = prefix.rstrip("/")
    if storage.exists(f"{base}/{storage.SUCCESS_MARKER}"):
        storage.download_dir(base, work)
        return work
    rels = [u[len(base) + 1 :] for u in storage.list_uris(base + "/")]
    tops = sorted({r.split("/", 1)[0] for r in rels if r.count("/") == 1 and r.endswith(TASK_FILE)})
    if rels and any(r == TASK_FILE for r in rels):
        raise UserError(
            f"data source {prefix}: a task directory without its {storage.SUCCESS_MARKER} "
            "manifest; publish it with 'ppminilm storage cp DIR URI'"
        )
    if not tops:
        raise UserError(
            f"data source {prefix}: holds no task directories (looked for "
            f"{prefix}/<task>/{TASK_FILE}; found {len(rels)} objects)"
        )
    for top in tops:
        storage.download_dir(f"{base}/{top}", work / top)
    return work


def import_task_dirs(
    source: str, dest: Path, names: Sequence[str] = ()
) -> dict[str, dict[str, int]]:
    """Validate task directories from ``source`` and copy them to ``dest/<task>/``.

    Args:
        source: A task directory, a local directory of task directories, or an ``s3://``
            prefix of task directories.
        dest: The data artifact's ``tasks/`` directory (being staged).
        names: Tasks to take (any case); empty takes every task found.

    Returns:
        Examples per split of each task taken.

    Raises:
        UserError: If the source holds no task directory, a named task is not there, or two
            directories describe the same task.
        DataError: If a task directory does not validate.
        StorageError: On object-store failures (an incomplete prefix included).
    """
    from ppminilm.data import load_task_dir

    with tempfile.TemporaryDirectory(prefix="ppminilm-tasks-") as tmp:
        root = _fetch_remote(source, Path(tmp)) if is_remote(source) else Path(source)
        found: dict[str, tuple[Path, Any]] = {}
        for task_dir in _local_task_dirs(root):
            data = load_task_dir(task_dir)
            if data.task in found:
                raise UserError(
                    f"data source {source}: {found[data.task][0]} and {task_dir} both hold task "
                    f"{data.task!r}"
                )
            found[data.task] = (task_dir, data)
        wanted = [normalize_task(n) for n in names] or sorted(found)
        missing = [n for n in wanted if n not in found]
        if missing:
            raise UserError(
                f"data source {source}: no task directory for {missing}; it holds {sorted(found)}"
            )
        counts = {}
        for name in wanted:
            task_dir, data = found[name]
            copy_dir(task_dir, dest / name, kind="task")
            counts[name] = data.counts()
            logger.info("task %s from %s: %s", name, source, counts[name])
    return counts


def _publish(local: Path, uri: str) -> str:
    from ppminilm import storage

    storage.upload_dir(local, uri)
    return uri


def _model_dir(name_or_dir: str, work: Path) -> Path:
    """A local model directory: the path itself, or a PaddleNLP name downloaded and saved."""
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    from ppminilm.compat import paddlenlp

    transformers = paddlenlp.module("transformers")
    logger.info("downloading %s through paddlenlp", name_or_dir)
    model = transformers.AutoModel.from_pretrained(name_or_dir)
    model.save_pretrained(str(work), safe_serialization=True)
    transformers.AutoTokenizer.from_pretrained(name_or_dir).save_pretrained(str(work))
    return work


def _tokenizer_dir(name_or_dir: str, work: Path) -> Path:
    path = Path(name_or_dir)
    if path.is_dir():
        return path
    from ppminilm.compat import paddlenlp

    logger.info("downloading the %s tokenizer through paddlenlp", name_or_dir)
    paddlenlp.module("transformers").AutoTokenizer.from_pretrained(name_or_dir).save_pretrained(
        str(work)
    )
    return work


def stage_data(
    to: str,
    *,
    tasks: Sequence[str] = (),
    data_home: str | None = None,
    corpus: str | None = None,
    vocab: str | None = None,
    teacher: str | None = None,
) -> dict[str, str]:
    """Publish what the pipeline needs into ``to`` for a cluster without internet.

    Args:
        to: Destination prefix (``s3://bucket/path``, or a local directory).
        tasks: CLUE tasks to download and publish under ``tasks/`` (one artifact).
        data_home: Read the CLUE files from this folder instead of downloading (see
            :func:`ppminilm.data.clue.download_clue`).
        corpus: A local directory of corpus shards, published under ``corpus/``.
        vocab: A tokenizer directory or a PaddleNLP model name, published under ``vocab/``.
        teacher: A model directory or a PaddleNLP model name (``roberta-wwm-ext-large``),
            checked to load and published under ``teacher/`` (weights as safetensors when
            downloaded here).

    Returns:
        The pipeline parameters that read what was published (``data_source``,
        ``corpus_uri``, ``vocab_uri``, ``teacher_uri``).

    Raises:
        UserError: If nothing is given to publish, or the teacher and vocabulary differ.
    """
    from ppminilm.data import load_task_dir
    from ppminilm.data.clue import download_clue
    from ppminilm.modeling.saved import read_model_info, same_vocabulary

    if not (tasks or corpus or vocab or teacher):
        raise UserError(
            "data stage: nothing to publish (give --tasks, --corpus, --vocab or --teacher)"
        )
    base = to.rstrip("/")
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="ppminilm-stage-") as tmp:
        work = Path(tmp)
        if tasks:
            for task in tasks:
                load_task_dir(download_clue(task, work / TASKS_DIR / task, data_home=data_home))
            out["data_source"] = _publish(work / TASKS_DIR, f"{base}/{TASKS_DIR}")
        if corpus:
            if not Path(corpus).is_dir() or not any(Path(corpus).glob("*.txt")):
                raise UserError(f"--corpus {corpus}: expected a directory of *.txt shards")
            out["corpus_uri"] = _publish(Path(corpus), f"{base}/{CORPUS_DIR}")
        teacher_dir = _model_dir(teacher, work / TEACHER_DIR) if teacher else None
        vocab_dir = _tokenizer_dir(vocab, work / VOCAB_DIR) if vocab else None
        if teacher_dir is not None:
            read_model_info(teacher_dir)  # a foreign or incomplete dir fails here, named
            if vocab_dir is not None:
                same_vocabulary(teacher_dir, vocab_dir, "teacher and student")
            out["teacher_uri"] = _publish(teacher_dir, f"{base}/{TEACHER_DIR}")
        if vocab_dir is not None:
            out["vocab_uri"] = _publish(vocab_dir, f"{base}/{VOCAB_DIR}")
    logger.info("staged for the pipeline: %s", out)
    return out


__all__ = ["TEACHER_DIR", "import_task_dirs", "stage_data"]
