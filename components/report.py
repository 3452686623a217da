"""KFP components: the run report and the exit-handler status record."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Input, Markdown, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def report(
    results: Input[list[Artifact]],
    student: Input[Model],
    markdown: Output[Markdown],
    html: Output[HTML],
    summary: Output[Artifact],
    profile: str = "local",
):
    """Assemble the seed-style summary table, grid/quantization tables and plots.

    Args:
        results: Benchmark results of every task and model (``dsl.Collected``).
        student: The distilled student (its loss curve and provenance).
        markdown: Output: ``report.md``.
        html: Output: self-contained ``report.html`` for the Kubeflow UI.
        summary: Output: the run summary JSON the report was built from.
        profile: ``local`` or ``cluster``.
    """
    from ppminilm.runner import run_step

    run_step(
        "report",
        artifact=summary,
        results=[r.path for r in results],
        student=student.path,
        markdown=markdown.path,
        html=html.path,
        summary=summary.path,
        profile=profile,
    )


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def record_status(status: dsl.PipelineTaskFinalStatus, record: Output[Artifact]):
    """Exit handler: write the run's final state (runs even when a stage failed).

    Args:
        status: Final status of the pipeline's tasks (filled in by KFP).
        record: Output: JSON with state, error code and message.
    """
    from ppminilm.runner import run_step

    run_step(
        "record-status",
        out=record.path,
        state=status.state,
        job=status.pipeline_job_resource_name,
        error_code=status.error_code,
        error_message=status.error_message,
    )
