"""KFP component: pick the best grid point of a task and export it for inference."""

from kfp import dsl
from kfp.dsl import Input, Markdown, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def select_best(
    models: Input[list[Model]],
    best: Output[Model],
    inference_model: Output[Model],
    grid_table: Output[Markdown],
    metrics: Output[Metrics],
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
):
    """Select the best fine-tuned model of a grid search and export a static inference model.

    Tie-break: highest dev accuracy, then smaller learning rate, then smaller batch size.

    Args:
        models: The grid's fine-tuned models (``dsl.Collected``), all of one task.
        best: Output: the selected dynamic-graph model.
        inference_model: Output: its static inference export (FP32).
        grid_table: Output: Markdown table of dev accuracy over the grid.
        metrics: The selected point and its dev accuracy.
        profile: ``local`` or ``cluster``.
        overrides: Stage config overrides, ``{"finetune": {...}}`` (max_seq_len).
    """
    from ppminilm.runner import run_step

    run_step(
        "select-best",
        artifact=best,
        metrics=metrics,
        extra_artifacts=[inference_model],
        models=[m.path for m in models],
        best_out=best.path,
        inference_out=inference_model.path,
        grid_md=grid_table.path,
        profile=profile,
        overrides=overrides,
    )
