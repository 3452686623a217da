"""The Kubernetes side of every pipeline task, from the one table in ``ppminilm.cluster.platform``.

:func:`configure` gives a task its CPU/memory requests and limits, a size-limited memory-backed
``/dev/shm`` (counted inside the memory limit), a pod deadline, retries with a
``backoff_max_duration`` longer than every attempt together, the images' non-root user, and --
for the stages that read or write object storage themselves -- the endpoint and region (the
``ppminilm-storage`` ConfigMap) and the credentials (the ``ppminilm-s3-credentials`` Secret).
The same settings apply in both branches; only the sizes differ (``platform.TASK_RESOURCES``).
KFP's local runner ignores all of it (with a warning); ``tests/pipelines`` checks the compiled IR.
"""

from __future__ import annotations

from kfp import dsl, kubernetes

from ppminilm.cluster.platform import (
    IMAGE_GID,
    IMAGE_UID,
    S3_SECRET_KEYS,
    S3_SECRET_NAME,
    STORAGE_CONFIG_KEYS,
    STORAGE_CONFIGMAP,
    task_resources,
)

#: Stages whose code reads or writes object storage directly (``*_uri`` inputs: corpus and
#: vocab shards, a pretrained teacher or student, distillation checkpoints, the PaddleJob's
#: inputs). Typed artifacts of every other stage move through the KFP launcher instead.
STORAGE_STAGES = frozenset({"build-data", "pretrain-teacher", "distill"})
SHM_VOLUME = "dshm"


def stage_of(task: dsl.PipelineTask) -> str:
    """The stage a task runs: its component's name (``finetune``, ``benchmark``, ...)."""
    return task.component_spec.name.replace("_", "-")


def with_storage(task: dsl.PipelineTask) -> None:
    """Endpoint + region from the storage ConfigMap and the keys from the Secret, as env."""
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=STORAGE_CONFIGMAP,
        config_map_key_to_env={key: key for key in STORAGE_CONFIG_KEYS},
    )
    kubernetes.use_secret_as_env(
        task,
        secret_name=S3_SECRET_NAME,
        secret_key_to_env={key: env for env, key in S3_SECRET_KEYS.items()},
    )


def configure(task: dsl.PipelineTask, gpu: bool, resources: str | None = None) -> dsl.PipelineTask:
    """Apply the cluster settings of the task's stage (GPU or CPU branch) to ``task``.

    Args:
        task: A task of one of our components.
        gpu: Whether the task belongs to the GPU branch (sizes from the ``gpu`` row).
        resources: Row of ``platform.TASK_RESOURCES`` to size the task by, when it is not
            the stage's own (the distill step that only waits for a PaddleJob on a CPU node:
            ``paddlejob-distill``). The storage env still follows the stage.

    Returns:
        ``task``.

    Raises:
        KeyError: If the stage (or ``resources``) has no row in ``platform.TASK_RESOURCES``.
    """
    stage = stage_of(task)
    res = task_resources(resources or stage, gpu)
    task.set_cpu_request(res.cpu_request)
    task.set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory)
    task.set_memory_limit(res.memory_limit)
    if res.shm:
        kubernetes.empty_dir_mount(
            task,
            volume_name=SHM_VOLUME,
            mount_path="/dev/shm",
            medium="Memory",
            size_limit=res.shm,
        )
    kubernetes.set_timeout(task, res.timeout_s)
    if res.retries:
        task.set_retry(
            num_retries=res.retries,
            backoff_duration=f"{res.backoff_s}s",
            backoff_factor=2.0,
            backoff_max_duration=f"{res.backoff_max_s}s",
        )
    kubernetes.set_security_context(
        task, run_as_user=IMAGE_UID, run_as_group=IMAGE_GID, run_as_non_root=True
    )
    if stage in STORAGE_STAGES:
        with_storage(task)
    return task
