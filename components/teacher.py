"""KFP component: the distillation teacher (pre-trained locally or imported)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def pretrain_teacher(
    data: Input[Dataset],
    teacher: Output[Model],
    metrics: Output[Metrics],
    profile: str = "local",
    teacher_uri: str = "",
    overrides: dict = {},  # noqa: B006
):
    """Provide the teacher: copy a pretrained directory, or pre-train one by MLM.

    On the cluster ``teacher_uri`` points at a paddlenlp pretrained directory
    (``roberta-wwm-ext-large``) in object storage. Locally it is empty and a small teacher is
    pre-trained on the data set's corpus by masked-language modelling.

    Args:
        data: Output of build-data (corpus and vocab).
        teacher: Output model directory.
        metrics: Final MLM loss and training time (or nothing for an imported teacher).
        profile: ``local`` or ``cluster``.
        teacher_uri: ``s3://`` prefix or local directory of a pretrained teacher.
        overrides: Stage config overrides, ``{"teacher": {...}}``.
    """
    from ppminilm.runner import run_step

    run_step(
        "pretrain-teacher",
        artifact=teacher,
        metrics=metrics,
        data=data.path,
        out=teacher.path,
        profile=profile,
        overrides=overrides,
        teacher_uri=teacher_uri,
    )
