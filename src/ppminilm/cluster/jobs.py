"""The PaddleJob lifecycle: idempotent launch, adoption, waiting, cleanup.

A pipeline step (the "launching pod", on a CPU node) submits the job through the
``kubeflow-training`` SDK and waits; the GPUs belong to the job's worker pods only.

* **Idempotent.** The job name is derived from the KFP run id and the checkpoint prefix
  (:func:`job_name`): a retry of the same step looks the name up first and adopts the job it
  finds (running: wait for it; succeeded: use it; failed: delete it and start a fresh one,
  which resumes from the S3 checkpoint) instead of failing with 409. A new run gets a new name.
* **Owned.** The job's ownerReference is the launching pod (name and UID from the downward API,
  :class:`PodIdentity`), so Kubernetes deletes the job when that pod is deleted; an adopting
  retry re-points it to itself, otherwise the dead attempt's pod would take the job with it.
* **Bounded.** ``activeDeadlineSeconds`` and ``ttlSecondsAfterFinished`` (see
  :mod:`ppminilm.cluster.paddlejob`); on SIGTERM (run cancelled) the step deletes the job
  before exiting 143; on timeout it deletes it too.
* **One writer per checkpoint prefix.** A job of another run that is still active on the same
  checkpoint prefix is refused, naming it: two jobs would overwrite each other's checkpoints.
* **The pod's own namespace** (downward API, else the service account's namespace file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import signal
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.cluster.paddlejob import (
    CHECKPOINT_LABEL,
    KIND,
    MAX_NAME_LEN,
    RUN_ID_LABEL,
    PaddleJobError,
    PaddleJobSpec,
    _import_sdk,
    build_paddlejob,
    owner_reference,
    to_sdk_model,
)
from ppminilm.errors import EXIT_PREEMPTED, ConfigError
from ppminilm.io import atomic_write_json

logger = logging.getLogger(__name__)

#: Downward-API environment of the launching pod (the pipeline sets these on the step).
POD_NAME_ENV = "PPMINILM_POD_NAME"
POD_UID_ENV = "PPMINILM_POD_UID"
POD_NAMESPACE_ENV = "PPMINILM_POD_NAMESPACE"
#: The launching pod's service account: the job's workers run under the same one (the
#: run's ``pipeline-runner`` / ``default-editor``, or whatever the run was given), so the
#: RBAC and cloud identity (IRSA, workload identity) bound to it reach the workers too.
POD_SERVICE_ACCOUNT_ENV = "PPMINILM_POD_SERVICE_ACCOUNT"
#: Downward-API field paths for the variables above.
POD_FIELD_PATHS = {
    POD_NAME_ENV: "metadata.name",
    POD_UID_ENV: "metadata.uid",
    POD_NAMESPACE_ENV: "metadata.namespace",
    POD_SERVICE_ACCOUNT_ENV: "spec.serviceAccountName",
}
#: The workers' image as the pipeline was compiled (``pipelines.compile`` retargets it with
#: the executor images: IMAGE_REGISTRY / IMAGE_TAG / IMAGE_DIGESTS); unset: the default.
WORKER_IMAGE_ENV = "PPMINILM_WORKER_IMAGE"
#: Where every pod finds its namespace when the downward API variable is not set.
SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
JOB_NAME_PREFIX = "ppminilm-distill"
#: Seconds to wait for a deleted job to disappear before re-creating its name.
DELETE_WAIT_S = 120
#: Seconds the step waits beyond the job's own deadline, so the operator's verdict is read.
WAIT_MARGIN_S = 300
#: Conditions after which a job does nothing more.
FINISHED = ("Succeeded", "Failed")


class JobCancelled(BaseException):
    """SIGTERM reached the launching step (run cancelled or pod evicted).

    A ``BaseException``: the SDK wraps every ``Exception`` from its HTTP calls in a
    ``RuntimeError``, which would hide the signal.
    """


@dataclasses.dataclass(frozen=True)
class PodIdentity:
    """The launching pod, as the downward API describes it."""

    name: str
    uid: str
    namespace: str
    service_account: str = ""

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> PodIdentity | None:
        """The pod from ``PPMINILM_POD_NAME``/``_UID``/``_NAMESPACE``/``_SERVICE_ACCOUNT``,
        or None outside a pod (the service account may be empty: older packages)."""
        env = os.environ if env is None else env
        name, uid = env.get(POD_NAME_ENV, ""), env.get(POD_UID_ENV, "")
        if not name or not uid:
            return None
        return cls(
            name=name,
            uid=uid,
            namespace=current_namespace(env),
            service_account=env.get(POD_SERVICE_ACCOUNT_ENV, ""),
        )

    def owner_reference(self) -> dict[str, Any]:
        """ownerReference to this pod."""
        return owner_reference(self.name, self.uid)


def current_namespace(
    env: Mapping[str, str] | None = None, sa_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE
) -> str:
    """The namespace this pod runs in: downward API, else the service account's file.

    Raises:
        ConfigError: Outside a pod with neither (pass the namespace explicitly).
    """
    env = os.environ if env is None else env
    if env.get(POD_NAMESPACE_ENV):
        return env[POD_NAMESPACE_ENV]
    if sa_file.is_file():
        text = sa_file.read_text(encoding="utf-8").strip()
        if text:
            return text
    raise ConfigError(
        f"cannot tell this pod's namespace: set {POD_NAMESPACE_ENV} (downward API "
        f"metadata.namespace) or pass the namespace explicitly ({sa_file} is missing)"
    )


def checkpoint_key(checkpoint_uri: str) -> str:
    """A label-safe key of a checkpoint prefix (the same prefix always gives the same key)."""
    return hashlib.sha1(checkpoint_uri.rstrip("/").encode()).hexdigest()[:12]


def job_name(run_id: str, checkpoint_uri: str) -> str:
    """The PaddleJob name of one run's distillation: run id and checkpoint key in it.

    Args:
        run_id: The KFP run id (``dsl.PIPELINE_JOB_ID_PLACEHOLDER``); empty outside KFP, then
            only the checkpoint prefix names the job (re-running adopts it).
        checkpoint_uri: The job's checkpoint prefix.

    Returns:
        A DNS-1123 label of at most ``MAX_NAME_LEN`` characters.
    """
    run = re.sub(r"[^a-z0-9]", "", run_id.lower())[:16]
    parts = [JOB_NAME_PREFIX, *([run] if run else []), checkpoint_key(checkpoint_uri)[:8]]
    name = "-".join(parts)
    assert len(name) <= MAX_NAME_LEN, name
    return name


def _label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "", text)[:63].strip("-_.")


def _conditions(job: Any) -> list[str]:
    """Types of the job's true conditions, oldest first."""
    status = getattr(job, "status", None)
    out = []
    for c in getattr(status, "conditions", None) or []:
        if getattr(c, "status", None) == "True":
            out.append(str(c.type))
    return out


def _finished_as(job: Any) -> str | None:
    conditions = _conditions(job)
    for kind in FINISHED:
        if kind in conditions:
            return kind
    return None


def _condition_summary(job: Any) -> str:
    """One line: the true conditions, with the reason and message of the last one."""
    status = getattr(job, "status", None)
    conditions = [c for c in getattr(status, "conditions", None) or [] if c.status == "True"]
    if not conditions:
        return "no conditions"
    last = conditions[-1]
    detail = ": ".join(str(x) for x in (last.reason, last.message) if x)
    names = " -> ".join(str(c.type) for c in conditions)
    return f"{names}{f' ({detail})' if detail else ''}"


def _is_not_found(exc: BaseException) -> bool:
    cause = exc.__cause__
    return getattr(cause, "status", None) == 404


class JobRunner:
    """Launch-or-adopt, wait and clean up one PaddleJob through a ``TrainingClient``.

    Args:
        client: A ``kubeflow.training.TrainingClient`` (tests point one at a fake API server).
        namespace: Namespace of the job (the launching pod's).
        polling_interval_s: Seconds between status polls.
        delete_wait_s: Seconds to wait for a deleted job to disappear.
    """

    def __init__(
        self,
        client: Any,
        namespace: str,
        *,
        polling_interval_s: float = 30,
        delete_wait_s: float = DELETE_WAIT_S,
    ) -> None:
        if polling_interval_s <= 0:
            raise ValueError(f"polling_interval_s={polling_interval_s}: expected > 0")
        self.client = client
        self.namespace = namespace
        self.polling_interval_s = polling_interval_s
        self.delete_wait_s = delete_wait_s

    # ----------------------------------------------------------------- API calls

    def get(self, name: str) -> Any | None:
        """The job, or None if it does not exist."""
        try:
            return self.client.get_job(name=name, namespace=self.namespace, job_kind=KIND)
        except RuntimeError as exc:
            if _is_not_found(exc):
                return None
            raise PaddleJobError(f"could not read {KIND} {self.namespace}/{name}: {exc}") from exc

    def delete(self, name: str, *, wait: bool = False) -> None:
        """Delete the job (its pods go with it); a missing job is not an error."""
        try:
            self.client.delete_job(name=name, namespace=self.namespace, job_kind=KIND)
        except RuntimeError as exc:
            if not _is_not_found(exc):
                raise PaddleJobError(
                    f"could not delete {KIND} {self.namespace}/{name}: {exc}; delete it by "
                    f"hand (kubectl -n {self.namespace} delete paddlejob {name}) to free its GPUs"
                ) from exc
        logger.info("deleted %s %s/%s", KIND, self.namespace, name)
        if wait:
            deadline = time.monotonic() + self.delete_wait_s
            while self.get(name) is not None:
                if time.monotonic() > deadline:
                    raise PaddleJobError(
                        f"{KIND} {self.namespace}/{name} still exists {self.delete_wait_s} s "
                        "after deletion (a finalizer?)"
                    )
                time.sleep(min(self.polling_interval_s, 1.0))

    def adopt(self, name: str, owner: PodIdentity | None) -> None:
        """Re-point the job's ownerReference to ``owner`` (the retried step's pod)."""
        if owner is None:
            logger.warning("adopting %s without an owner pod (no downward API env)", name)
            return
        patch = {"metadata": {"ownerReferences": [owner.owner_reference()]}}
        try:
            self.client.update_job(patch, name=name, namespace=self.namespace, job_kind=KIND)
        except RuntimeError as exc:
            raise PaddleJobError(
                f"could not re-point {KIND} {self.namespace}/{name} to pod {owner.name}: {exc}"
            ) from exc
        logger.info("%s %s/%s now owned by pod %s", KIND, self.namespace, name, owner.name)

    def check_single_writer(self, name: str, key: str) -> None:
        """Refuse when another active job writes the same checkpoint prefix.

        Raises:
            ConfigError: Naming the other job.
        """
        try:
            jobs = self.client.list_jobs(namespace=self.namespace, job_kind=KIND)
        except RuntimeError as exc:
            raise PaddleJobError(f"could not list {KIND}s in {self.namespace}: {exc}") from exc
        for job in jobs:
            meta = job.metadata
            if meta.name == name or (meta.labels or {}).get(CHECKPOINT_LABEL) != key:
                continue
            if _finished_as(job) is None:
                raise ConfigError(
                    f"{KIND} {self.namespace}/{meta.name} (run "
                    f"{(meta.labels or {}).get(RUN_ID_LABEL, '?')}) is still active on the "
                    "same checkpoint_uri; two jobs would overwrite each other's checkpoints. "
                    f"Use another checkpoint_uri or delete it (kubectl -n {self.namespace} "
                    f"delete paddlejob {meta.name})"
                )

    # ----------------------------------------------------------------- lifecycle

    def launch(self, manifest: Mapping[str, Any], owner: PodIdentity | None) -> dict[str, Any]:
        """Create the job, or adopt the one of the same name (same run).

        Returns:
            ``{"name", "action"}`` with action ``created``, ``adopted`` or ``recreated``.
        """
        name = manifest["metadata"]["name"]
        action = "created"
        existing = self.get(name)
        if existing is not None:
            finished = _finished_as(existing)
            if finished == "Failed":
                logger.warning(
                    "%s %s/%s of this run failed earlier (%s); deleting it and starting a "
                    "fresh job, which resumes from the checkpoint",
                    KIND,
                    self.namespace,
                    name,
                    _conditions(existing),
                )
                self.delete(name, wait=True)
                action = "recreated"
            else:
                logger.info(
                    "adopting %s %s/%s (%s) instead of creating it",
                    KIND,
                    self.namespace,
                    name,
                    finished or (_conditions(existing) or ["no conditions yet"])[-1],
                )
                self.adopt(name, owner)
                return {"name": name, "action": "adopted"}
        key = manifest["metadata"].get("labels", {}).get(CHECKPOINT_LABEL)
        if key:
            self.check_single_writer(name, key)
        try:
            self.client.create_job(job=to_sdk_model(manifest), namespace=self.namespace)
        except (RuntimeError, TimeoutError) as exc:
            raise PaddleJobError(f"could not create {KIND} {self.namespace}/{name}: {exc}") from exc
        logger.info("created %s %s/%s", KIND, self.namespace, name)
        return {"name": name, "action": action}

    def wait(self, name: str, timeout_s: float) -> Any:
        """Wait for ``Succeeded``.

        Raises:
            PaddleJobError: Failed, vanished or timed out (then deleted).
        """
        hint = (
            f"check: kubectl -n {self.namespace} describe paddlejob {name}; "
            f"kubectl -n {self.namespace} logs -l training.kubeflow.org/job-name={name}"
        )
        where = f"{KIND} {self.namespace}/{name}"
        try:
            return self.client.wait_for_job_conditions(
                name=name,
                namespace=self.namespace,
                job_kind=KIND,
                expected_conditions={"Succeeded"},
                wait_timeout=timeout_s,
                polling_interval=self.polling_interval_s,
            )
        except TimeoutError as exc:
            logger.warning("%s did not succeed within %s s; deleting it", where, timeout_s)
            self.delete(name)
            raise PaddleJobError(f"{where} did not succeed within {timeout_s} s; {hint}") from exc
        except RuntimeError as exc:
            if _is_not_found(exc):
                raise PaddleJobError(
                    f"{where} disappeared while running (deleted by hand, by its TTL, or by "
                    "the garbage collector with its owner pod)"
                ) from exc
            job = self.get(name)
            what = _condition_summary(job) if job is not None else " ".join(str(exc).split())
            raise PaddleJobError(f"{where} failed ({what}); {hint}") from exc

    def run(
        self, manifest: Mapping[str, Any], owner: PodIdentity | None, timeout_s: float
    ) -> dict[str, Any]:
        """Launch or adopt, wait, and delete the job if this process is told to stop.

        Returns:
            A record: ``manifest``, ``action`` (created/adopted/recreated), ``status``.

        Raises:
            PaddleJobError: See :meth:`wait`.
            SystemExit: 143 after SIGTERM, once the job is deleted.
        """
        name = manifest["metadata"]["name"]
        try:
            with _cancel_on_sigterm():
                launched = self.launch(manifest, owner)
                job = self.wait(name, timeout_s)
        except JobCancelled:
            # The handler is restored here: a second SIGTERM does not interrupt the delete.
            logger.warning(
                "cancelled: deleting %s %s/%s to free its GPUs", KIND, self.namespace, name
            )
            self.delete(name)
            raise SystemExit(EXIT_PREEMPTED) from None
        sdk = _import_sdk()
        status = sdk.ApiClient().sanitize_for_serialization(job).get("status", {})
        logger.info("%s %s/%s succeeded", KIND, self.namespace, name)
        return {"manifest": dict(manifest), "action": launched["action"], "status": status}


@contextlib.contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`JobCancelled` while the block runs (main thread only)."""

    def handle(signum: int, _frame: types.FrameType | None) -> None:
        raise JobCancelled(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def training_client(namespace: str) -> Any:
    """A ``TrainingClient`` for PaddleJobs: in-cluster config in a pod, else ``KUBECONFIG``."""
    sdk = _import_sdk()
    return sdk.TrainingClient(namespace=namespace, job_kind=KIND)


def save_job_record(record: Mapping[str, Any], path: str | Path) -> None:
    """Write a job record as JSON, completely or not at all."""
    atomic_write_json(path, dict(record))


def run_distill_job(
    record_path: str | Path,
    *,
    job_name: str,
    distill_args: Sequence[str],
    workers: int,
    gpus_per_worker: int,
    image: str = "",
    namespace: str = "",
    cpu: str = "16",
    memory: str = "96Gi",
    shm_size: str = "32Gi",
    timeout_s: int = 604800,
    run_id: str = "",
    checkpoint_uri: str = "",
    polling_interval_s: float = 30,
    client: Any = None,
) -> dict[str, Any]:
    """Step entry: build the job, launch or adopt it, wait, and save its record.

    Empty ``image`` means the image the pipeline was compiled with (``PPMINILM_WORKER_IMAGE``),
    else the project's GPU training image; empty ``namespace`` the launching pod's own
    (:func:`current_namespace`). The launching pod (downward API) owns the job, and its
    workers run under the pod's service account (``PPMINILM_POD_SERVICE_ACCOUNT``; without
    it, ``PaddleJobSpec``'s default).

    Args:
        record_path: Where the job record JSON goes.
        job_name: PaddleJob name (:func:`job_name`).
        distill_args: ``ppminilm distill`` arguments of the workers.
        workers: Worker pods (nodes).
        gpus_per_worker: GPUs (ranks) per worker.
        image: Worker image.
        namespace: Namespace (default: this pod's).
        cpu: CPU per worker.
        memory: Memory per worker.
        shm_size: ``/dev/shm`` per worker.
        timeout_s: The job's ``activeDeadlineSeconds`` and how long this step waits.
        run_id: KFP run id (job label).
        checkpoint_uri: The job's checkpoint prefix (label: one writer per prefix).
        polling_interval_s: Seconds between status polls.
        client: A ``TrainingClient`` (default: :func:`training_client`).

    Returns:
        The job record (as saved to ``record_path``).
    """
    from ppminilm.cluster import platform

    owner = PodIdentity.from_environment()
    ns = namespace or (owner.namespace if owner else current_namespace())
    labels = {}
    if run_id:
        labels[RUN_ID_LABEL] = _label_value(run_id)
    if checkpoint_uri:
        labels[CHECKPOINT_LABEL] = checkpoint_key(checkpoint_uri)
    # The workers run under the launching pod's (the run's) service account; outside a pod,
    # or from a package without that downward-API variable, under the spec's default.
    account = owner.service_account if owner and owner.service_account else ""
    spec = PaddleJobSpec(
        name=job_name,
        distill_args=tuple(distill_args),
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        image=image or os.environ.get(WORKER_IMAGE_ENV) or platform.GPU_TRAIN_IMAGE,
        cpu=cpu,
        memory=memory,
        shm_size=shm_size,
        active_deadline_s=int(timeout_s),
        labels=labels,
        service_account=account or PaddleJobSpec.service_account,
    )
    if owner is None:
        logger.warning(
            "no %s/%s in the environment: the PaddleJob gets no owner and outlives this "
            "process if it dies (its activeDeadlineSeconds still applies)",
            POD_NAME_ENV,
            POD_UID_ENV,
        )
    elif owner.namespace != ns:
        raise ConfigError(
            f"namespace={ns!r} differs from the launching pod's {owner.namespace!r}: an "
            "ownerReference only works within one namespace"
        )
    manifest = build_paddlejob(spec, ns, owner.owner_reference() if owner else None)
    runner = JobRunner(client or training_client(ns), ns, polling_interval_s=polling_interval_s)
    logger.info(
        "%s %s/%s: %d worker(s) x %d GPU(s) on pool %s",
        KIND,
        ns,
        job_name,
        spec.workers,
        spec.gpus_per_worker,
        spec.node_pool,
    )
    # The step outlives the job's own deadline by a little, so the operator's verdict is read.
    record = runner.run(manifest, owner, timeout_s=timeout_s + WAIT_MARGIN_S)
    save_job_record(record, record_path)
    return dict(record)
