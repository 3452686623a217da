"""Every stage config class by its profile key (the keys ``overrides`` and profiles take)."""

from __future__ import annotations

from ppminilm.config.base import StageConfig
from ppminilm.config.serve import ServeConfig
from ppminilm.config.stages import (
    DataConfig,
    DistillConfig,
    FinetuneConfig,
    GridConfig,
    InferConfig,
    PruneConfig,
    QuantConfig,
    SearchConfig,
    TeacherConfig,
)

#: Every stage config class by its profile key, in pipeline order.
STAGE_CONFIGS: dict[str, type[StageConfig]] = {
    cls.stage: cls
    for cls in (
        DataConfig,
        TeacherConfig,
        DistillConfig,
        FinetuneConfig,
        GridConfig,
        PruneConfig,
        QuantConfig,
        SearchConfig,
        InferConfig,
        ServeConfig,
    )
}
