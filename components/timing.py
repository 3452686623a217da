"""KFP component: time the speed baseline and every search candidate interleaved."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def time_rows(
    data: Input[Dataset],
    fp32: Input[Model],
    pruned: Input[list[Model]],
    int8: Input[list[Model]],
    timing: Output[Artifact],
    metrics: Output[Metrics],
    task: str,
    profile: str = "local",
    device: str = "cpu",
    overrides: dict = {},  # noqa: B006
):
    """Time the speed baseline (BERT-base shape, or the local teacher's) and every candidate.

    All rows run in this one step, interleaved round by round, each round until a time budget,
    so machine load hits every row alike; the speed-up is the median of the rounds' ratios and
    the rounds' range is the spread the search's tie rule uses. Rows are named by candidate
    (6L-w0.75-int8: layers, width, precision, from each model's serving.json).

    Args:
        data: Output of build-data (the task's dev split is timed).
        fp32: The fine-tuned FP32 inference model (as benchmarked).
        pruned: Every width's pruned FP32 model (dsl.Collected over the widths loop).
        int8: Every width's INT8 model as its benchmark deployed it (dsl.Collected).
        timing: Output: per-row seconds per dev pass in every round, speed-ups and spreads.
        metrics: Rows timed and the fastest row's speed-up over the baseline.
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
        models=[fp32.path, *[m.path for m in pruned], *[m.path for m in int8]],
        out=timing.path,
        task=task,
        device=device,
        profile=profile,
        overrides=overrides,
    )
