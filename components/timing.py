"""KFP component: time the speed baseline and a task's models interleaved (the speed column)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def time_rows(
    data: Input[Dataset],
    fp32: Input[Model],
    pruned: Input[Model],
    int8: Input[Model],
    timing: Output[Artifact],
    metrics: Output[Metrics],
    task: str,
    profile: str = "local",
    device: str = "cpu",
    overrides: dict = {},  # noqa: B006
):
    """Time the speed baseline (BERT-base shape, or the local teacher's) and the three models.

    All rows run in this one step, interleaved round by round, each round until a time budget,
    so machine load hits every row alike; the speed-up is the median of the rounds' ratios.

    Args:
        data: Output of build-data (the task's dev split is timed).
        fp32: The fine-tuned FP32 inference model.
        pruned: The pruned FP32 inference model.
        int8: The pruned INT8 inference model.
        timing: Output: per-row seconds per dev pass in every round, speed-ups and spreads.
        metrics: Speed-up of each model over the baseline.
        task: Task name.
        profile: local or cluster.
        device: cpu or gpu.
        overrides: Stage config overrides, {"infer": {"timing": {...}, "baseline": {...}}}.
    """
    from ppminilm.runner import run_step

    run_step(
        "time-rows",
        artifact=timing,
        metrics=metrics,
        data=data.path,
        models={"fp32": fp32.path, "pruned": pruned.path, "int8": int8.path},
        out=timing.path,
        task=task,
        device=device,
        profile=profile,
        overrides=overrides,
    )
