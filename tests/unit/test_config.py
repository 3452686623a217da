"""Stage configs: recipe defaults, validation at construction, strict dict round-trip."""

import json
from pathlib import Path

import pytest

from ppminilm.config import (
    CLUE_TASKS,
    STAGE_CONFIGS,
    DistillConfig,
    FinetuneConfig,
    GridConfig,
    InferConfig,
    ModelArch,
    PruneConfig,
    QuantConfig,
    normalize_task,
    resolve,
    resolve_all,
    split_overrides,
)
from ppminilm.config.profiles import PROFILES, stage_config


def test_recipe_defaults():
    d = DistillConfig()
    assert (d.teacher_layer, d.student_layer, d.num_relation_heads) == (20, 6, 64)
    assert (d.alpha, d.beta, d.learning_rate, d.warmup_steps, d.max_steps) == (
        0.0,
        1.0,
        6e-4,
        4000,
        400000,
    )
    assert GridConfig().points()[0] == {"batch_size": 16, "learning_rate": 3e-5}
    assert len(GridConfig().points()) == 9
    q = QuantConfig()
    # quant_post.py: one calibration batch of 4 or of 8 examples.
    assert q.algos == ("mse", "avg", "abs_max", "hist")
    assert (q.batch_sizes, q.batch_nums) == ((4, 8), (1,))
    assert q.weight_quantize_type == "channel_wise_abs_max" and q.hist_percent == 0.9999
    assert FinetuneConfig(task="CLUEWSC2020").epochs == 50
    assert InferConfig().warmup_batches == 20


@pytest.mark.parametrize("cls", list(STAGE_CONFIGS.values()))
def test_round_trip(cls, tmp_path):
    cfg = cls()
    assert cls.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    cfg.save(tmp_path / "c.json")
    assert cls.load(tmp_path / "c.json") == cfg


def test_unknown_key_is_an_error():
    with pytest.raises(ValueError, match=r"unknown FinetuneConfig key\(s\) \['lerning_rate'\]"):
        FinetuneConfig.from_dict({"lerning_rate": 1e-4})


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (QuantConfig, {"algos": ["mse", "fancy"]}, "QuantConfig.algos='fancy' is not allowed"),
        (FinetuneConfig, {"task": "my task!"}, "task name 'my task!' is not valid"),
        (FinetuneConfig, {"batch_size": 0}, "FinetuneConfig.batch_size=0 must be > 0"),
        (DistillConfig, {"alpha": 0.6, "beta": 0.6}, "alpha \\+ beta"),
        (DistillConfig, {"num_relation_heads": 5}, "must divide the student hidden size"),
        (ModelArch, {"width": 0.7}, "fractional head count"),
        (ModelArch, {"hidden_size": 100, "num_heads": 12}, "divisible"),
        (InferConfig, {"precision": "fp16"}, "needs device='gpu'"),
        (GridConfig, {"batch_sizes": []}, "non-empty"),
    ],
)
def test_validation_names_field(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_task_names_any_case():
    assert [normalize_task(t.upper()) for t in CLUE_TASKS] == list(CLUE_TASKS)


def test_bad_json_config_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "task": "tnews",\n  oops\n}\n')
    with pytest.raises(ValueError, match=r"bad.json:3:\d+: invalid JSON"):
        FinetuneConfig.load(path)


def test_profiles_only_list_differences():
    for profile, stages in PROFILES.items():
        for stage, overrides in stages.items():
            default = STAGE_CONFIGS[stage]().to_dict()
            for key, value in overrides.items():
                assert key in default, f"{profile}.{stage}.{key} is not a config field"
                assert value != default[key], f"{profile}.{stage}.{key} repeats the default"
    assert stage_config("distill", "cluster") == DistillConfig(batch_size=128, use_amp=True)


def test_profile_overrides_merge():
    cfg = stage_config("distill", "local", {"student": {"num_layers": 4}, "student_layer": 4})
    assert cfg.student.num_layers == 4 and cfg.student.hidden_size == 64
    with pytest.raises(ValueError, match="unknown profile"):
        stage_config("distill", "laptop")


def test_numbers_widened_by_kfp_are_restored():
    # KFP passes dict parameters as protobuf Structs: every number arrives as a float.
    cfg = stage_config("data", "local", {"num_shards": 2.0, "reviews_train": 400.0})
    assert cfg.num_shards == 2 and isinstance(cfg.num_shards, int)
    grid = GridConfig.from_dict({"batch_sizes": [16.0, 32.0]})
    assert grid.batch_sizes == (16, 32)
    distill = stage_config(
        "distill", "local", {"student": {"num_layers": 4.0}, "student_layer": 4.0}
    )
    assert distill.student.num_layers == 4 and isinstance(distill.student.num_layers, int)
    with pytest.raises(ValueError):
        stage_config("data", "local", {"num_shards": 2.5})


def test_per_task_recipe_values_reach_every_stage_that_encodes_text():
    # run_one_search.sh: CSL at 256 for 8 epochs, the other tasks at 128.
    for cls in (FinetuneConfig, PruneConfig, QuantConfig, InferConfig):
        assert resolve(cls, "cluster", task="CSL").max_seq_len == 256
        assert resolve(cls, "cluster", task="tnews").max_seq_len == 128
        assert resolve(cls, "cluster").max_seq_len == 128  # no task named: no per-task layer
    ft = resolve(FinetuneConfig, "cluster", task="csl")
    assert (ft.task, ft.num_epochs, ft.epochs) == ("csl", 8, 8)
    assert resolve(FinetuneConfig, "cluster", task="cluewsc2020").num_epochs == 50
    # The per-task epochs are the fine-tuning stage's only: pruning keeps its own.
    assert (
        resolve(PruneConfig, "cluster", task="cluewsc2020").num_epochs == PruneConfig().num_epochs
    )
    # The local profile's own lengths win over the recipe's per-task values.
    assert resolve(FinetuneConfig, "local", task="csl").max_seq_len == 64


def test_per_task_layers_order_profile_then_overrides_then_fields(monkeypatch):
    monkeypatch.setitem(PROFILES["local"], "per_task", {"local_pairs": {"max_seq_len": 48}})
    assert resolve(PruneConfig, "local", task="local_pairs").max_seq_len == 48
    assert resolve(PruneConfig, "local", task="local_reviews").max_seq_len == 64
    over = {
        "prune": {"max_seq_len": 40},
        "per_task": {"LOCAL_PAIRS": {"max_seq_len": 36, "quantize": {"max_seq_len": 20}}},
    }
    assert resolve(PruneConfig, "local", over, task="local_pairs").max_seq_len == 36
    assert resolve(QuantConfig, "local", over, task="local_pairs").max_seq_len == 20
    assert resolve(PruneConfig, "local", over, task="local_reviews").max_seq_len == 40
    assert resolve(PruneConfig, "local", over, task="local_pairs", max_seq_len=30).max_seq_len == 30


def test_per_task_layer_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"\['max_seq_length'\] is neither a stage"):
        split_overrides({"per_task": {"csl": {"max_seq_length": 256}}})
    with pytest.raises(ValueError, match="expected an object of fields"):
        split_overrides({"per_task": {"csl": {"finetune": 3}}})
    with pytest.raises(ValueError, match="unknown stage key"):
        split_overrides({"pertask": {}})


def test_config_show_prints_the_resolution(capsys):
    from ppminilm.cli import main

    assert main(["config", "show", "--profile", "cluster", "--task", "CSL"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["task"] == "csl" and set(shown["stages"]) == set(STAGE_CONFIGS)
    for name, cfg in resolve_all("cluster", task="csl").items():
        assert shown["stages"][name] == cfg.to_dict()
    assert shown["stages"]["finetune"]["max_seq_len"] == 256
    assert shown["stages"]["teacher"]["max_seq_len"] == 128  # not a per-task stage


@pytest.mark.parametrize(
    ("stage", "cls", "field", "value", "kept"),
    [
        ("finetune", "FinetuneConfig", "seed", 3, {"max_seq_len": 64, "num_epochs": 1}),
        ("prune", "PruneConfig", "learning_rate", 1e-4, {"max_seq_len": 64, "num_epochs": 1}),
        ("quantize", "QuantConfig", "algos", ["mse"], {"max_seq_len": 64, "batch_sizes": [8]}),
    ],
)
def test_partial_config_file_merges_over_the_profile(
    tmp_path: Path, stage: str, cls: str, field: str, value: object, kept: dict
) -> None:
    """A ``--config`` naming one field changes that field only: the rest stays the profile's
    (it used to reset the stage to the cluster defaults)."""
    import argparse

    from ppminilm import config as config_module
    from ppminilm.cli._common import overrides_of

    config_cls = getattr(config_module, cls)
    for document in ({field: value}, {stage: {field: value}}):
        path = tmp_path / f"{stage}.json"
        path.write_text(json.dumps(document))
        args = argparse.Namespace(config=str(path))
        cfg = config_module.resolve(config_cls, "local", overrides_of(args, stage))
        got = getattr(cfg, field)
        assert (list(got) if isinstance(got, tuple) else got) == value
        for name, expected in kept.items():
            kept_value = getattr(cfg, name)
            kept_value = list(kept_value) if isinstance(kept_value, tuple) else kept_value
            assert kept_value == expected, (document, name)
