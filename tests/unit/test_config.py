"""Stage configs: recipe defaults, validation at construction, strict dict round-trip."""

import json

import pytest

from ppminilm.config import (
    CLUE_TASKS,
    STAGE_CONFIGS,
    DistillConfig,
    FinetuneConfig,
    GridConfig,
    InferConfig,
    ModelArch,
    QuantConfig,
    normalize_task,
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
    assert q.algos == ("mse", "avg", "abs_max", "hist") and q.batch_nums == (4, 8)
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
        (FinetuneConfig, {"task": "mnli"}, "unknown task 'mnli'"),
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
