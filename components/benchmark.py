"""KFP component: benchmark of one inference model on a task's dev set (Paddle or a CPU peer)."""

from typing import Optional

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
    deployable: Output[Model],
    task: str,
    name: str,
    profile: str = "local",
    device: str = "cpu",
    overrides: dict = {},  # noqa: B006
    engine: str = "paddle",
    reference: Optional[Input[Model]] = None,  # noqa: UP045 -- KFP parses Optional[...]
):
    """Time the whole dev set end to end (warm-up batches skipped) and score it.

    CPU: oneDNN (INT8 kernels for quantized models, checked), or a peer engine; ``auto`` times
    every installed engine and reports the fastest at Paddle's accuracy. GPU: TensorRT with
    tuned dynamic shape (shape ranges collected on a first pass).

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
        deployable: Output: the inference model the reported engine runs (its serving.json
            names the engine).
        engine: paddle, openvino, onnxruntime or auto (CPU).
        reference: The FP32 model a peer engine quantizes itself (for an INT8 row).
    """
    from ppminilm.runner import run_step

    run_step(
        "benchmark",
        artifact=result,
        extra_artifacts=[deployable],
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
        engine=engine,
        reference=reference.path if reference is not None else None,
        deploy=deployable.path,
    )
