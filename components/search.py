"""KFP components of the compression search: check its parameters, choose a task's model."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def check_search(
    widths: list,
    accuracy_budget: float,
    do_distill: bool = True,
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
):
    """Fail in seconds on a bad search: budget in points, widths keeping whole heads.

    Runs before anything trains (the data step waits for it). Each width must keep a whole
    number of the student's attention heads (for 12 heads: 0.75 keeps 9, 0.5 keeps 6; 0.6
    would keep 7.2); an imported student (do_distill false) is checked by prune instead.

    Args:
        widths: The pruning widths the search compares.
        accuracy_budget: Points of dev accuracy accepted below the fine-tuned FP32 model.
        do_distill: Whether the run distils the profile's student.
        profile: local or cluster.
        overrides: Stage config overrides ({"distill": {"student": ...}}).
    """
    from ppminilm.runner import run_step

    run_step(
        "check-search",
        widths=widths,
        accuracy_budget=accuracy_budget,
        do_distill=do_distill,
        profile=profile,
        overrides=overrides,
    )


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def select_candidate(
    fp32_result: Input[Artifact],
    pruned_results: Input[list[Artifact]],
    int8_results: Input[list[Artifact]],
    timing: Input[Artifact],
    fp32: Input[Model],
    pruned: Input[list[Model]],
    int8: Input[list[Model]],
    merged: Output[Artifact],
    chosen: Output[Model],
    frontier: Output[Markdown],
    metrics: Output[Metrics],
    accuracy_budget: float,
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
):
    """Keep the fastest candidate within the accuracy budget of the fine-tuned FP32 model.

    Candidates: the FP32 model and every width's FP32 and INT8 sub-models, scored on dev and
    timed together. Speeds within the measured round-to-round spread are ties, broken by dev
    accuracy, then size; if no compressed candidate is within budget the FP32 model is kept,
    and the reason says why. A labelled test split's accuracy is reported, never used.

    Args:
        fp32_result: Benchmark result of the fine-tuned FP32 model (the reference).
        pruned_results: Benchmark results of every width's FP32 sub-model (dsl.Collected).
        int8_results: Benchmark results of every width's INT8 model (dsl.Collected).
        timing: The interleaved timing of all candidates.
        fp32: The FP32 model as benchmarked.
        pruned: Every width's FP32 sub-model as benchmarked (dsl.Collected).
        int8: Every width's INT8 model as benchmarked (dsl.Collected).
        merged: Output: the task's rows, timing and choice, for the report.
        chosen: Output: the chosen inference model (its serving.json names the engine), with
            search.json (every candidate and the reason) beside it.
        frontier: Output: the frontier table of every candidate (Markdown).
        metrics: The choice for run comparison: width, INT8 or not, dev accuracy and drop,
            test accuracy, speed-up, size, budget.
        accuracy_budget: Points of dev accuracy accepted below the fine-tuned FP32 model.
        profile: local or cluster.
        overrides: Stage config overrides, {"search": {...}}.
    """
    from ppminilm.runner import run_step

    run_step(
        "select-candidate",
        artifact=merged,
        metrics=metrics,
        extra_artifacts=[chosen],
        reference=fp32_result.path,
        candidates=[r.path for r in [*pruned_results, *int8_results]],
        timing=timing.path,
        out=merged.path,
        models=[m.path for m in [fp32, *pruned, *int8]],
        chosen_out=chosen.path,
        frontier_md=frontier.path,
        accuracy_budget=accuracy_budget,
        profile=profile,
        overrides=overrides,
    )
