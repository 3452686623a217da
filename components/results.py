"""KFP component: merge one task's benchmark results for the report."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def merge_results(
    fp32: Input[Artifact],
    pruned: Input[Artifact],
    int8: Input[Artifact],
    merged: Output[Artifact],
):
    """Combine a task's three benchmark rows (FP32, pruned FP32, pruned INT8) into one JSON.

    Args:
        fp32: Benchmark result of the fine-tuned FP32 model.
        pruned: Benchmark result of the pruned FP32 model.
        int8: Benchmark result of the pruned INT8 model.
        merged: Output: ``{"task": ..., "rows": [...]}`` for the report.
    """
    from ppminilm.runner import run_step

    run_step("merge-results", results=[fp32.path, pruned.path, int8.path], out=merged.path)
