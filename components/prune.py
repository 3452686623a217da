"""KFP components: OFA width pruning for every search width, and one width taken out of it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prune(
    data: Input[Dataset],
    model: Input[Model],
    pruned: Output[Model],
    metrics: Output[Metrics],
    task: str,
    widths: list = [],  # noqa: B006 -- KFP needs a literal default
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
):
    """Rank heads/neurons on a train sample, reorder, and distil one OFA supernet into every
    width at once (batch size and learning rate: the selected grid point's).

    Args:
        data: Output of build-data (tasks/<task>/: train for importance and distillation,
            dev for selection).
        model: The selected fine-tuned model (teacher of the pruning distillation).
        pruned: Output: every width's best sub-model (dynamic and static): the smallest in
            model/ and inference/, the others in width_<w>/, prune_summary.json.
        metrics: Dev accuracy before/after (smallest width) and parameter counts.
        task: Task name.
        widths: Widths to train (empty: the profile's prune.width_mult_list).
        profile: local or cluster.
        overrides: Stage config overrides, {"prune": {...}}.
    """
    from ppminilm.runner import run_step

    run_step(
        "prune",
        artifact=pruned,
        metrics=metrics,
        data=data.path,
        model=model.path,
        out=pruned.path,
        task=task,
        profile=profile,
        overrides=overrides,
        width_mult_list=widths or None,
    )


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def take_width(
    pruned: Input[Model],
    width: float,
    model: Output[Model],
    inference_model: Output[Model],
    metrics: Output[Metrics],
):
    """Take one width's sub-model out of the prune step's output (a search candidate).

    Args:
        pruned: Output of prune (every trained width).
        width: The width to take (one the prune step trained).
        model: Output: the width's dynamic sub-model.
        inference_model: Output: its static inference export (FP32).
        metrics: The width, its best dev accuracy and encoder parameters.
    """
    from ppminilm.runner import run_step

    run_step(
        "take-width",
        artifact=model,
        metrics=metrics,
        extra_artifacts=[inference_model],
        pruned=pruned.path,
        out=model.path,
        inference_out=inference_model.path,
        width=width,
    )
