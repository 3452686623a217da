"""KFP component: multi-node distillation as a Training Operator PaddleJob.

Used by the pipeline when distill_nodes > 1. The component itself runs in the CPU image and
only submits and watches the job; the training runs in the worker pods (GPU training image, V100
pool). Data and the distilled model move through object storage (S3 URIs in distill_args),
because the workers cannot see this step's local artifact paths.
"""

from kfp import dsl
from kfp.dsl import Artifact, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def paddlejob_distill(
    job_name: str,
    distill_args: list[str],
    job_record: Output[Artifact],
    workers: int = 2,
    gpus_per_worker: int = 8,
    image: str = "",
    namespace: str = "",
    cpu: str = "16",
    memory: str = "96Gi",
    shm_size: str = "32Gi",
    timeout_s: int = 604800,
):
    """Run ppminilm distill on several GPU nodes as a PaddleJob and wait for it.

    Args:
        job_name: PaddleJob name (DNS-1123 label, at most 48 characters, unique per run).
        distill_args: Arguments of ppminilm distill (object-store URIs and config).
        job_record: Output: JSON with the submitted PaddleJob and its final status.
        workers: Worker pods (nodes).
        gpus_per_worker: GPUs per worker; one Paddle rank per GPU.
        image: Worker image; empty means ``PPMINILM_WORKER_IMAGE`` if set, else the
            project's GPU training image.
        namespace: Namespace of the job; empty means this step's own (it must be, for the
            job's ownerReference to this pod: set PPMINILM_POD_NAME/_UID/_NAMESPACE, and
            _SERVICE_ACCOUNT for the workers' service account, from the downward API with
            ``kfp.kubernetes.use_field_path_as_env``, see
            ``ppminilm.cluster.jobs.POD_FIELD_PATHS``).
        cpu: CPU request and limit per worker.
        memory: Memory request and limit per worker.
        shm_size: Size of the memory-backed /dev/shm per worker.
        timeout_s: The job's activeDeadlineSeconds; the step waits as long (then deletes it).
    """
    # Defaults (image, namespace) are resolved in the core: KFP ships this source alone.
    from ppminilm.cluster import jobs

    jobs.run_distill_job(
        job_record.path,
        job_name=job_name,
        distill_args=distill_args,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        image=image,
        namespace=namespace,
        cpu=cpu,
        memory=memory,
        shm_size=shm_size,
        timeout_s=timeout_s,
    )
