"""Stage configs and profiles: what every stage runs with, resolved one way.

``config_for(PruneConfig, "local", overrides)`` (or :func:`resolve`, which also takes explicit
fields) gives a stage's config: the recipe's defaults (:mod:`.stages`, per-task values in
:mod:`.tasks`), then the profile's changes (:mod:`.profiles`), then the caller's overrides;
with ``task=`` the per-task layers apply too. Importing this package imports no paddle.
"""

from ppminilm.config.base import Record, StageConfig, check_value
from ppminilm.config.profiles import (
    PER_TASK,
    PROFILES,
    check_profile,
    config_for,
    config_overrides,
    deep_merge,
    parse_overrides,
    read_config_file,
    resolve,
    resolve_all,
    split_overrides,
    stage_config,
)
from ppminilm.config.registry import STAGE_CONFIGS
from ppminilm.config.serve import ServeConfig
from ppminilm.config.stages import (
    CPU_INT8_OPS,
    ENGINE_AUTO,
    ENGINES,
    PRECISIONS,
    QUANT_ALGOS,
    DataConfig,
    DistillConfig,
    FinetuneConfig,
    GridConfig,
    InferConfig,
    ModelArch,
    PruneConfig,
    QuantConfig,
    SearchConfig,
    TeacherConfig,
    TimingConfig,
    bert_base_arch,
    check_width_list,
    check_widths,
)
from ppminilm.config.tasks import (
    ALL_TASKS,
    CLUE_TASKS,
    DEFAULT_EPOCHS,
    LOCAL_TASKS,
    TASK_DEFAULTS,
    default_epochs,
    is_builtin_task,
    normalize_task,
)

__all__ = [
    "ALL_TASKS",
    "CLUE_TASKS",
    "CPU_INT8_OPS",
    "DEFAULT_EPOCHS",
    "ENGINES",
    "ENGINE_AUTO",
    "LOCAL_TASKS",
    "PER_TASK",
    "PRECISIONS",
    "PROFILES",
    "QUANT_ALGOS",
    "STAGE_CONFIGS",
    "TASK_DEFAULTS",
    "DataConfig",
    "DistillConfig",
    "FinetuneConfig",
    "GridConfig",
    "InferConfig",
    "ModelArch",
    "PruneConfig",
    "QuantConfig",
    "Record",
    "SearchConfig",
    "ServeConfig",
    "StageConfig",
    "TeacherConfig",
    "TimingConfig",
    "bert_base_arch",
    "check_profile",
    "check_value",
    "check_width_list",
    "check_widths",
    "config_for",
    "config_overrides",
    "deep_merge",
    "default_epochs",
    "is_builtin_task",
    "normalize_task",
    "parse_overrides",
    "read_config_file",
    "resolve",
    "resolve_all",
    "split_overrides",
    "stage_config",
]
