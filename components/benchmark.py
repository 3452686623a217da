"""KFP component: Paddle Inference benchmark of one inference model on a task's dev set."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def benchmark(
    data: Input[Dataset],
    model: Input[Model],
    result: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    task: str,
    name: str,
    profile: str = "local",
    device: str = "cpu",
    overrides: dict = {},  # noqa: B006
):
    """Time the whole dev set end to end (warm-up batches skipped) and score it.

    CPU: oneDNN (INT8 kernels for quantized models, checked). GPU: TensorRT with tuned dynamic
    shape (shape ranges collected on a first pass).

    Args:
        data: Output of build-data.
        model: Static inference model (FP32 or INT8).
        result: Output: JSON with latency p50/p95, throughput, accuracy, INT8 kernel check.
        metrics: The same figures as KFP metrics.
        confusion: Confusion matrix on dev.
        task: Task name.
        name: Row name in the report (e.g. pruned 0.75 INT8).
        profile: local or cluster.
        device: cpu or gpu.
        overrides: Stage config overrides, {"infer": {...}}.
    """
    from ppminilm.runner import run_step

    run_step(
        "benchmark",
        artifact=result,
        metrics=metrics,
        confusion=confusion,
        data=data.path,
        model=model.path,
        out=result.path,
        task=task,
        name=name,
        device=device,
        profile=profile,
        overrides=overrides,
    )
