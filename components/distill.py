"""KFP component: general distillation (MiniLMv2 relations + sample relations)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def distill(
    data: Input[Dataset],
    teacher: Input[Model],
    student: Output[Model],
    metrics: Output[Metrics],
    profile: str = "local",
    enabled: bool = True,
    student_uri: str = "",
    checkpoint_uri: str = "",
    overrides: dict = {},  # noqa: B006
    nodes: int = 1,
    gpus_per_node: int = 8,
    run_id: str = "",
):
    """Distil the teacher's Q/K/V relations into a 6-layer student, or import a student.

    With enabled=False the stage is skipped and the pretrained student at student_uri
    (e.g. ppminilm-6l-768h) is passed on unchanged, so the rest of the pipeline is the same.

    Args:
        data: Output of build-data (corpus shards and vocab).
        teacher: Output of pretrain-teacher.
        student: Output: the distilled (or imported) student encoder.
        metrics: Final distillation loss, steps and time.
        profile: local or cluster.
        enabled: Run distillation (otherwise import student_uri).
        student_uri: Pretrained student directory used when enabled is false.
        checkpoint_uri: s3:// prefix for resumable checkpoints (pre-emptible nodes).
        overrides: Stage config overrides, {"distill": {...}}.
        nodes: GPU nodes; more than 1 runs a Training Operator PaddleJob (needs an s3://
            checkpoint_uri through which the workers get their inputs).
        gpus_per_node: GPUs per node: data-parallel ranks here (one node) or per PaddleJob
            worker; the step must be given as many GPUs.
        run_id: KFP run id (dsl.PIPELINE_JOB_ID_PLACEHOLDER); names the PaddleJob so a
            retried step adopts it.
    """
    from ppminilm.runner import run_step

    run_step(
        "distill",
        artifact=student,
        metrics=metrics,
        data=data.path,
        teacher=teacher.path,
        out=student.path,
        profile=profile,
        overrides=overrides,
        enabled=enabled,
        student_uri=student_uri,
        checkpoint_uri=checkpoint_uri,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        run_id=run_id,
    )
