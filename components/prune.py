"""KFP component: OFA width pruning with distillation from the fine-tuned model."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prune(
    data: Input[Dataset],
    model: Input[Model],
    pruned: Output[Model],
    inference_model: Output[Model],
    metrics: Output[Metrics],
    task: str,
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
):
    """Rank heads/neurons on a train sample, reorder, and distil into width 0.75.

    Args:
        data: Output of build-data (tasks/<task>/: train for importance and distillation,
            dev for selection).
        model: The selected fine-tuned model (teacher of the pruning distillation).
        pruned: Output: the pruned dynamic-graph model.
        inference_model: Output: its static inference export (FP32).
        metrics: Dev accuracy before/after and parameter counts.
        task: Task name.
        profile: local or cluster.
        overrides: Stage config overrides, {"prune": {...}}.
    """
    from ppminilm.runner import run_step

    run_step(
        "prune",
        artifact=pruned,
        metrics=metrics,
        extra_artifacts=[inference_model],
        data=data.path,
        model=model.path,
        out=pruned.path,
        inference_out=inference_model.path,
        task=task,
        profile=profile,
        overrides=overrides,
    )
