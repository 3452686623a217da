"""Loaded at start-up by the components' interpreters during a quiet ``make run``.

``pipelines.console.quiet_kfp`` puts this directory on ``PYTHONPATH`` and sets
``PPMINILM_KFP_QUIET=1``; KFP's executor then still runs unchanged, but its bookkeeping
records (the full ``executor_input`` JSON of every task, where it found the component, where it
wrote the output file) are dropped. Everything else, errors and tracebacks included, passes.
"""

import logging
import os

#: Starts of the KFP executor's bookkeeping messages.
_DROP = (
    "Got executor_input",
    "Looking for component",
    "--component_module_path is not specified",
    "Loading KFP component",
    "Wrote executor output file",
    "Did not write output file",
)


def _keep(record: logging.LogRecord) -> bool:
    return not (record.levelno < logging.WARNING and str(record.msg).startswith(_DROP))


if os.environ.get("PPMINILM_KFP_QUIET") == "1":
    logging.getLogger().addFilter(_keep)
