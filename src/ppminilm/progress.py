"""How progress reaches a person: bars at a terminal, tagged log lines elsewhere (paddle-free).

* :func:`progress_bars_wanted` -- tqdm bars only where a person watches a terminal; KFP logs,
  CI and pipes get one log line every few steps instead.
* :func:`tag_records` -- prefix every ``ppminilm`` log record of a pipeline step with what it
  is working on (``[finetune local_reviews bs16_lr0.001]``), so the lines of grid points
  running side by side can be told apart.
* :func:`format_seconds` -- ``1m15s``.
"""

from __future__ import annotations

import logging
import os
import sys

#: Logger whose records are tagged (every ``ppminilm.*`` logger propagates to it).
PACKAGE_LOGGER = "ppminilm"


def progress_bars_wanted() -> bool:
    """Whether to draw tqdm bars: a person at a terminal (not KFP logs, CI or a pipe).

    ``PPMINILM_PROGRESS=bar`` forces bars, ``PPMINILM_PROGRESS=log`` forces log lines.
    """
    mode = os.environ.get("PPMINILM_PROGRESS", "").strip().lower()
    if mode in ("bar", "log"):
        return mode == "bar"
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``1m15s``; under a minute ``42s``."""
    whole = max(0, round(seconds))
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class _Tag(logging.Filter):
    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == PACKAGE_LOGGER or record.name.startswith(PACKAGE_LOGGER + ".")
        if ours and not getattr(record, "_ppminilm_tagged", False):
            record.msg = f"[{self.tag}] {record.msg}"
            record._ppminilm_tagged = True  # type: ignore[attr-defined]
        return True


def tag_records(tag: str) -> None:
    """Prefix every ``ppminilm`` log record from now on with ``[tag]`` (replaces a previous tag).

    The filter sits on the package logger's handlers' path: records of ``ppminilm.*`` loggers
    reach it through propagation, so it is added to each handler of the root and package
    loggers.
    """
    for handler in {*logging.getLogger().handlers, *logging.getLogger(PACKAGE_LOGGER).handlers}:
        for old in [f for f in handler.filters if isinstance(f, _Tag)]:
            handler.removeFilter(old)
        handler.addFilter(_Tag(tag))
