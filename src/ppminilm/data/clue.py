"""The real CLUE download through paddlenlp, written as task directories.

paddlenlp's ``load_dataset("clue", task)`` downloads ``<task>_public.zip`` into
``DATA_HOME/Clue`` (``DATA_HOME`` = ``$PPNLP_HOME/datasets``, fixed when paddlenlp is first
imported) and accepts each split file only if its MD5 matches the published one; otherwise it
downloads again. For offline use, pass ``data_home``: a folder laid out like ``DATA_HOME/Clue``
(the extracted ``<task>_public/`` folder, or the ``<task>_public.zip`` itself). Its files are
read through the same loader with ``data_files=`` (paddlenlp's public way to read local files of
a builder), which skips the download and the MD5 check.

paddlenlp turns labels into ids with its own label order (OCNLI's differs from CMNLI's); they
are turned back into label strings here, so the task directory stores CLUE's strings.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any

from ppminilm.config import CLUE_TASKS, normalize_task
from ppminilm.data.taskdir import DataError, read_split, write_task_dir
from ppminilm.data.tasks import NO_MAJORITY_LABEL, TASK_SPECS, example_to_text_pair
from ppminilm.errors import DownloadError

logger = logging.getLogger(__name__)

#: paddlenlp split names we read, by our split name.
_SOURCE_SPLITS = {"train": "train", "dev": "dev", "test": "test"}


class ClueDownloadError(DownloadError):
    """The CLUE files could be neither found locally nor downloaded."""


def _paddlenlp(module: str) -> Any:
    """A paddlenlp module, imported after :mod:`ppminilm.compat.paddle` (zlib before paddle)."""
    from ppminilm.compat import paddlenlp

    return paddlenlp.module(module)


def _builder_config(task: str) -> dict[str, Any]:
    return dict(_paddlenlp("datasets.clue").Clue.BUILDER_CONFIGS[task])


def _local_files(task: str, data_home: Path, config: dict[str, Any]) -> list[str]:
    """Split files under ``data_home`` (extracting ``<task>_public.zip`` if needed)."""
    files = [data_home / config["splits"][split][0] for split in _SOURCE_SPLITS.values()]
    if not all(f.is_file() for f in files):
        archive = data_home / f"{task}_public.zip"
        if archive.is_file():
            logger.info("extracting %s", archive)
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(data_home)
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ClueDownloadError(
            f"CLUE {task}: missing {', '.join(absent)}; expected the extracted "
            f"{task}_public/ folder (or {task}_public.zip) from {config['url']} in {data_home}"
        )
    return [str(f) for f in files]


def _load(task: str, data_home: Path | None) -> tuple[dict[str, list[dict[str, Any]]], str]:
    load_dataset = _paddlenlp("datasets").load_dataset
    clue_home = os.path.join(_paddlenlp("utils.env").DATA_HOME, "Clue")
    config = _builder_config(task)
    splits = list(_SOURCE_SPLITS.values())
    where = str(data_home) if data_home is not None else clue_home
    try:
        if data_home is not None:
            files = _local_files(task, Path(data_home), config)
            source = f"paddlenlp clue/{task} from local files in {data_home}"
            try:
                datasets = load_dataset("clue", task, data_files=files, splits=splits)
            except KeyError:
                raise
            except Exception as exc:
                _diagnose(task, files, exc)
        else:
            source = f"paddlenlp clue/{task} ({config['url']})"
            try:
                datasets = load_dataset("clue", task, splits=splits)
            except KeyError:
                raise
            except Exception as exc:  # network, HTTP, md5: paddle raises several kinds
                raise ClueDownloadError(
                    f"could not download CLUE {task} from {config['url']} into "
                    f"{clue_home} ({type(exc).__name__}: {exc}). Offline? "
                    f"Put the extracted {task}_public/ folder or {task}_public.zip in a folder "
                    f"and pass it as data_home (CLI: --data-home)"
                ) from exc
    except KeyError as exc:
        # paddlenlp maps labels to ids while reading and fails on one it does not know; it
        # skips "-" (no annotator majority) only in cmnli dev and ocnli train/dev.
        bad = exc.args[0] if exc.args else None
        if bad != NO_MAJORITY_LABEL or task not in ("cmnli", "ocnli"):
            raise DataError(
                where, None, "label", f"one of {config['labels']} in every {task} file", repr(bad)
            ) from None
        logger.info(
            "paddlenlp cannot read %r labels in every %s split; reading its files "
            "with ppminilm.data.read_split, which skips them",
            bad,
            task,
        )
        root = Path(data_home) if data_home is not None else Path(clue_home)
        split_files = {
            ours: root / config["splits"][theirs][0] for ours, theirs in _SOURCE_SPLITS.items()
        }
        return {
            ours: read_split(path, task, require_labels=ours != "test")
            for ours, path in split_files.items()
        }, source
    out: dict[str, list[dict[str, Any]]] = {}
    for ours, theirs in _SOURCE_SPLITS.items():
        dataset = datasets[splits.index(theirs)]
        label_list = list(dataset.label_list or config["labels"])
        out[ours] = [_label_back(dict(example), label_list) for example in dataset]
    return out, source


def _diagnose(task: str, files: list[str], exc: Exception) -> None:
    """Re-read local CLUE files with :func:`read_split` to name the bad file and line.

    Raises:
        DataError: Always: the first problem :func:`read_split` finds, else one naming the
            folder and paddlenlp's message.
    """
    for path, split in zip(files, _SOURCE_SPLITS):
        read_split(path, task, require_labels=split != "test")
    folder = str(Path(files[0]).parent)
    raise DataError(
        folder,
        None,
        "<file>",
        f"CLUE {task} files paddlenlp can read",
        f"{type(exc).__name__}: {exc}",
    ) from None


def _label_back(example: dict[str, Any], label_list: list[str]) -> dict[str, Any]:
    """Undo paddlenlp's label-to-id conversion (it leaves test files without labels alone)."""
    label = example.get("label")
    if isinstance(label, int) and not isinstance(label, bool):
        example["label"] = label_list[label]
    return example


def _drop_shared(splits: dict[str, list[dict[str, Any]]], task: str) -> None:
    """Drop examples whose text is in a higher-priority split (dev > test > train)."""
    seen: set[tuple[str, str | None]] = set()
    for name in ("dev", "test", "train"):
        keys = [example_to_text_pair(e, task) for e in splits[name]]
        kept = [e for e, k in zip(splits[name], keys) if k not in seen]
        if len(kept) < len(keys):
            logger.info(
                "%s %s: dropped %d example(s) whose text is also in an earlier split",
                task,
                name,
                len(keys) - len(kept),
            )
        splits[name] = kept
        seen.update(keys)


def download_clue(
    task: str,
    out_dir: str | os.PathLike[str],
    data_home: str | os.PathLike[str] | None = None,
) -> Path:
    """Load a CLUE task through paddlenlp and write it as a task directory.

    Train is kept whole (calibration and importance samples are drawn from it by the stages
    that need them). Dev stays exactly as published; train/test examples whose text also
    appears in dev (or test, for train) are dropped and counted in the log, so splits never
    share an example.

    Args:
        task: CLUE task name (any case).
        out_dir: Target task directory (replaced atomically).
        data_home: A folder laid out like paddlenlp's ``DATA_HOME/Clue`` to read instead of
            downloading (no MD5 check).

    Returns:
        The written task directory.

    Raises:
        ClueDownloadError: If the files are absent and cannot be downloaded (e.g. offline).
        DataError: If the data does not validate.
        ValueError: On a task that is not a CLUE task.
    """
    task = normalize_task(task)
    if task not in CLUE_TASKS:
        raise ValueError(f"{task!r} is not a CLUE task; expected one of {', '.join(CLUE_TASKS)}")
    splits, source = _load(task, Path(data_home) if data_home is not None else None)
    _drop_shared(splits, task)
    return write_task_dir(out_dir, task, splits, TASK_SPECS[task].labels, source=source)
