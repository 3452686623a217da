"""KFP component: post-training INT8 quantization search."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def quantize(
    data: Input[Dataset],
    model: Input[Model],
    quantized: Output[Model],
    candidates: Output[Markdown],
    metrics: Output[Metrics],
    task: str,
    profile: str = "local",
    overrides: dict = {},  # noqa: B006
    device: str = "cpu",
):
    """Run quant_post_static over algorithms x calibration sizes and keep the best.

    Calibrates on a sample of the task's train inputs (no labels) and selects on dev.

    Args:
        data: Output of build-data.
        model: Static FP32 inference model (the pruned export).
        quantized: Output: the best INT8 inference model.
        candidates: Output: Markdown table of every candidate's dev accuracy.
        metrics: Best algorithm, calibration batches, dev accuracy, INT8 kernel check.
        task: Task name.
        profile: local or cluster.
        overrides: Stage config overrides, {"quantize": {...}}.
        device: Where candidates are scored, as they will be served: cpu (oneDNN INT8)
            or gpu (TensorRT INT8, the T4 pool).
    """
    from ppminilm.runner import run_step

    run_step(
        "quantize",
        artifact=quantized,
        metrics=metrics,
        data=data.path,
        model=model.path,
        out=quantized.path,
        candidates_md=candidates.path,
        task=task,
        profile=profile,
        overrides=overrides,
        device=device,
    )
