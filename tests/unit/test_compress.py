"""Runner steps of stages 3 and 4 (ppminilm.runner.compress): what they decide before any work."""

from __future__ import annotations

import pytest

from ppminilm.config import PruneConfig
from ppminilm.contracts import FinetuneResult
from ppminilm.errors import ConfigError
from ppminilm.runner.compress import with_grid_point

#: The selected grid point of a fine-tuning run (the model's lineage).
SELECTED = FinetuneResult(
    task="tnews", batch_size=32, learning_rate=3e-5, best_dev_acc=0.5, best_step=10
)


def test_unset_pruning_hparams_come_from_the_selected_grid_point() -> None:
    cfg, source = with_grid_point(PruneConfig(), SELECTED)
    assert (cfg.batch_size, cfg.learning_rate) == (32, 3e-5)
    assert cfg.optimisation() == (32, 3e-5)
    assert source == "selected grid point bs32_lr3e-05 (batch_size, learning_rate)"


def test_set_pruning_hparams_win_over_the_grid_point() -> None:
    cfg, source = with_grid_point(PruneConfig(batch_size=8, learning_rate=1e-4), SELECTED)
    assert (cfg.batch_size, cfg.learning_rate) == (8, 1e-4) and source == "config"
    # Only the unset one is filled in.
    cfg, source = with_grid_point(PruneConfig(batch_size=8), SELECTED)
    assert (cfg.batch_size, cfg.learning_rate) == (8, 3e-5)
    assert source == "selected grid point bs32_lr3e-05 (learning_rate)"


def test_without_a_grid_point_the_unset_hparams_are_an_error_naming_the_fix() -> None:
    cfg, source = with_grid_point(PruneConfig(), None)
    assert source == "unset" and cfg.batch_size is None
    with pytest.raises(ConfigError, match=r"--batch-size, --learning-rate"):
        cfg.optimisation()
