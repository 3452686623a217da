"""The stage runner: one way for the CLI and the KFP components to run a stage.

Each stage is declared once (:func:`~ppminilm.runner.core.stage`) with its config class and
the result fields that become KFP metrics and artifact metadata; :data:`STAGES` lists them in
pipeline order. Both doors use the same functions with the same argument names:

* a KFP component calls ``run_step("finetune", artifact=model, metrics=metrics, data=...,
  init=..., out=..., task=..., profile=..., overrides=...)``;
* ``ppminilm finetune --task-dir D --init I --out O --config F`` calls
  ``finetune(data=D, init=I, out=O, overrides=read_config_file(F, "finetune"))``.

Configs resolve as defaults -> profile -> ``overrides`` (stage-keyed, partial) -> explicit
fields; a stage's input ``data`` is a task directory or the build-data artifact. Every step
returns a :class:`~ppminilm.contracts.StageSummary` and writes it into its output directory.
"""

from ppminilm.runner.core import (
    STAGES,
    StageSpec,
    emit,
    expected_errors,
    publish,
    resolve_task_dir,
    run_step,
    stage,
)
from ppminilm.runner.prepare import build_data, distill, paddlejob_distill_args, pretrain_teacher

from ppminilm.runner.finetune import export, finetune, grid, select_best  # isort: skip
from ppminilm.runner.compress import prune, quantize, take_width  # isort: skip
from ppminilm.runner.evaluate import (  # isort: skip
    benchmark,
    merge_results,
    read_result,
    record_status,
    report,
    time_rows,
)
from ppminilm.runner.serve import serve_manifest  # isort: skip
from ppminilm.runner.search import check_search, select_candidate  # isort: skip

__all__ = [
    "STAGES",
    "StageSpec",
    "benchmark",
    "build_data",
    "check_search",
    "distill",
    "emit",
    "expected_errors",
    "export",
    "finetune",
    "grid",
    "merge_results",
    "paddlejob_distill_args",
    "pretrain_teacher",
    "prune",
    "publish",
    "quantize",
    "read_result",
    "record_status",
    "report",
    "resolve_task_dir",
    "run_step",
    "select_best",
    "select_candidate",
    "serve_manifest",
    "stage",
    "take_width",
    "time_rows",
]
