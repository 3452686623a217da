"""KFP component: fine-tune one grid point on one task."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def finetune(
    data: Input[Dataset],
    init_model: Input[Model],
    model: Output[Model],
    metrics: Output[Metrics],
    task: str,
    batch_size: int,
    learning_rate: float,
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
):
    """Fine-tune the student on one task at one (batch size, learning rate) point.

    Evaluates on dev every ``eval_steps`` and keeps the best checkpoint.

    Args:
        data: Output of build-data (``tasks/<task>/``).
        init_model: The distilled student (encoder weights + vocab).
        model: Output: best dev checkpoint (classifier) with its summary.
        metrics: Best dev accuracy, majority-class accuracy, steps, time.
        task: CLUE task name (any case) or a local task.
        batch_size: Training batch size.
        learning_rate: Peak learning rate.
        profile: ``local`` or ``cluster``.
        overrides: Stage config overrides, ``{"finetune": {...}}``.
    """
    from ppminilm.runner import run_step

    run_step(
        "finetune",
        artifact=model,
        metrics=metrics,
        data=data.path,
        init=init_model.path,
        out=model.path,
        task=task,
        profile=profile,
        overrides=overrides,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
