"""Submit a compiled pipeline to a Kubeflow Pipelines API server (``make submit``).

In order: the run arguments are checked against the package's inputs and the recipe (before
any HTTP call; exit 2 names the bad key); the backend's version is checked against
:data:`pipelines.backend.BACKEND_FLOOR`; the pipeline and a version named after the git
revision are uploaded unless they exist (a second submit of the same revision reuses them);
the experiment is found by its exact name or created; the run is created from that version;
with ``--wait`` the command waits and exits non-zero unless the run SUCCEEDED.

Namespaces: on multi-user Kubeflow (healthz ``multi_user``) runs go to the profile namespace
(``--namespace`` / ``KFP_NAMESPACE``, default ``ppminilm.cluster.platform.NAMESPACE``); on
standalone KFP every run executes in KFP's own namespace and no namespace is sent. The run's
service account is the server's default for that install type unless ``--service-account``
names one (manifests/ binds our Role to both defaults).

Settings come from flags or the environment: ``KFP_HOST``, ``KFP_NAMESPACE``,
``KFP_EXPERIMENT``, ``KFP_TOKEN`` (bearer token; never printed), ``KFP_PRESET``,
``KFP_SERVICE_ACCOUNT``, ``KFP_ARGUMENTS`` (JSON of pipeline parameters).

Exit codes: 0 done (run SUCCEEDED with ``--wait``), 2 bad arguments or package, 3 the API
server could not be reached or refused a request, 4 the backend is older than the floor,
5 the run ended in another state than SUCCEEDED, 6 ``--wait`` timed out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipelines import backend
from pipelines.arguments import check_arguments, load_package
from ppminilm.errors import ConfigError

logger = logging.getLogger("ppminilm.submit")

EXIT_USAGE, EXIT_INFRA, EXIT_BACKEND, EXIT_RUN_FAILED, EXIT_WAIT_TIMEOUT = 2, 3, 4, 5, 6
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "local": ROOT / "pipelines" / "compiled" / "ppminilm.yaml",
    "cluster": ROOT / "pipelines" / "compiled" / "ppminilm-cluster.yaml",
}
#: What the ``cluster`` preset needs from the caller: the seed's inputs in object storage.
CLUSTER_REQUIRED = ("corpus_uri", "vocab_uri", "teacher_uri")
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELING")


class SubmitError(Exception):
    """A failure with the exit code ``submit`` ends with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def preset_arguments(preset: str, given: dict[str, Any], run_name: str) -> dict[str, Any]:
    """Arguments a preset adds to the ones given (the package holds the recipe defaults).

    ``cluster``: the seed recipe of ``ppminilm-cluster.yaml``; the caller gives the
    object-store URIs in :data:`CLUSTER_REQUIRED`; distillation checkpoints go under the
    bucket's ``checkpoints/<run name>`` unless ``checkpoint_uri`` is given, so a retried GPU
    task resumes. ``none``/``local``: nothing is added.

    Raises:
        ConfigError: If the cluster preset misses a required URI.
    """
    if preset != "cluster":
        return dict(given)
    from ppminilm.cluster.platform import S3_BUCKET

    missing = [key for key in CLUSTER_REQUIRED if not given.get(key)]
    if missing:
        raise ConfigError(
            f"preset 'cluster': give {', '.join(missing)} (s3:// prefixes) in --arguments; "
            "the rest of the seed recipe is the package's defaults"
        )
    out = dict(given)
    out.setdefault("checkpoint_uri", f"s3://{S3_BUCKET}/checkpoints/{run_name}/distill")
    return out


def revision(package: Path) -> str:
    """The pipeline version name's revision: the short git commit, plus a content hash when
    the work tree differs from it (``<sha>-dirty-<hash>``), or only the hash outside git."""
    digest = hashlib.sha256(package.read_bytes()).hexdigest()[:10]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return f"nogit-{digest}"
    return f"{sha}-dirty-{digest}" if dirty else sha


def _equals(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def healthz(host: str, token: str | None) -> dict[str, Any]:
    """The API server's healthz JSON as sent: ``tag_name`` (the backend version),
    ``multi_user``, ... (``kfp.Client.get_kfp_healthz`` drops ``tag_name``: its model lacks it).
    """
    import kfp_server_api

    config = kfp_server_api.Configuration(host=host.rstrip("/"))
    if token:
        config.api_key["authorization"] = token
        config.api_key_prefix["authorization"] = "Bearer"
    api = kfp_server_api.HealthzServiceApi(kfp_server_api.ApiClient(config))
    response = api.healthz_service_get_healthz(_preload_content=False)
    return json.loads(response.data or b"{}")


def check_backend(health: dict[str, Any]) -> bool:
    """The backend's version against the floor; returns whether it is multi-user.

    Raises:
        SubmitError: If the version is below :data:`pipelines.backend.BACKEND_FLOOR`.
    """
    tag = str(health.get("tag_name") or "")
    version = backend.parse_version(tag)
    floor = ".".join(map(str, backend.BACKEND_FLOOR))
    if version is None:
        logger.warning("KFP backend reports version %r; cannot check it against %s", tag, floor)
    elif version < backend.BACKEND_FLOOR:
        raise SubmitError(
            f"KFP backend {tag} is older than {floor}: {backend.FLOOR_REASON}. Upgrade Kubeflow "
            f"Pipelines (supported: {backend.SUPPORTED_RANGE})",
            EXIT_BACKEND,
        )
    elif version[:2] > backend.BACKEND_TESTED:
        logger.warning("KFP backend %s is newer than tested (%s)", tag, backend.SUPPORTED_RANGE)
    return bool(health.get("multi_user"))


def ensure_version(client: Any, package: Path, name: str, version_name: str, ns: str | None):
    """Pipeline ``name`` and its version ``version_name``: found by exact name or uploaded.

    Returns:
        ``(pipeline_id, version_id, created)``.
    """
    found = client.list_pipelines(filter=_equals("display_name", name), namespace=ns)
    pipelines = found.pipelines or []
    if len(pipelines) > 1:
        raise SubmitError(f"{len(pipelines)} pipelines are named {name!r}", EXIT_INFRA)
    if pipelines:
        pipeline_id = pipelines[0].pipeline_id
    else:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=name, namespace=ns)
        pipeline_id = pipeline_id.pipeline_id
        logger.info("uploaded pipeline %s (%s)", name, pipeline_id)
    versions = client.list_pipeline_versions(
        pipeline_id, filter=_equals("display_name", version_name)
    ).pipeline_versions
    if versions:
        return pipeline_id, versions[0].pipeline_version_id, False
    created = client.upload_pipeline_version(
        str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    logger.info("uploaded pipeline version %s (%s)", version_name, created.pipeline_version_id)
    return pipeline_id, created.pipeline_version_id, True


def ensure_experiment(client: Any, name: str, ns: str | None) -> str:
    """The id of the experiment named exactly ``name`` (created when missing)."""
    found = client.list_experiments(filter=_equals("display_name", name), namespace=ns)
    for exp in found.experiments or []:
        if exp.display_name == name:
            return exp.experiment_id
    return client.create_experiment(name, namespace=ns).experiment_id


def wait(client: Any, run_id: str, timeout_s: int, poll_s: float) -> str:
    """Poll the run until it reaches a final state; returns that state.

    Raises:
        SubmitError: If ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        state = str(client.get_run(run_id).state or "")
        if state in FINAL_STATES:
            return state
        if time.monotonic() >= deadline:
            raise SubmitError(
                f"run {run_id} still {state or 'pending'} after {timeout_s} s", EXIT_WAIT_TIMEOUT
            )
        time.sleep(poll_s)


def submit(args: argparse.Namespace, arguments: dict[str, Any], token: str | None) -> int:
    """Upload, create the run, optionally wait. Returns the exit code."""
    import kfp

    from ppminilm.cluster.platform import NAMESPACE

    multi_user = check_backend(healthz(args.host, token))
    client = kfp.Client(host=args.host, existing_token=token or None)
    ns = (args.namespace or NAMESPACE) if multi_user else None
    spec, _ = load_package(args.package)
    name = args.pipeline_name or spec["pipelineInfo"]["name"]
    version_name = f"{name}-{revision(args.package)}"
    pipeline_id, version_id, created = ensure_version(client, args.package, name, version_name, ns)
    logger.info("%s pipeline version %s", "created" if created else "reusing", version_name)
    experiment_id = ensure_experiment(client, args.experiment, ns)
    run = client.run_pipeline(
        experiment_id,
        args.run_name,
        params=arguments,
        pipeline_id=pipeline_id,
        version_id=version_id,
        enable_caching=not args.no_cache,
        service_account=args.service_account or None,
    )
    url = f"{args.host.rstrip('/')}/#/runs/details/{run.run_id}"
    print(f"run {run.run_id} submitted ({version_name}): {url}", flush=True)
    if not args.wait:
        return 0
    state = wait(client, run.run_id, args.timeout, args.poll)
    print(f"run {run.run_id} {state}")
    return 0 if state == "SUCCEEDED" else EXIT_RUN_FAILED


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags (defaults from the environment)."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=("cluster", "local", "none"),
                        default=env.get("KFP_PRESET", "cluster"))  # fmt: skip
    parser.add_argument("--package", type=Path, default=None, help="default: the preset's")
    parser.add_argument("--host", default=env.get("KFP_HOST", ""))
    parser.add_argument("--namespace", default=env.get("KFP_NAMESPACE", ""))
    parser.add_argument("--experiment", default=env.get("KFP_EXPERIMENT", "ppminilm"))
    parser.add_argument("--pipeline-name", default="", help="default: the package's name")
    parser.add_argument("--run-name", default="")
    parser.add_argument("--arguments", default=env.get("KFP_ARGUMENTS", "{}"),
                        help="JSON pipeline parameters (over the package's defaults)")  # fmt: skip
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--service-account", default=env.get("KFP_SERVICE_ACCOUNT", ""))
    parser.add_argument("--wait", action="store_true", help="wait; fail unless SUCCEEDED")
    parser.add_argument("--timeout", type=int, default=14 * 24 * 3600, help="--wait seconds")
    parser.add_argument("--poll", type=float, default=30.0, help="--wait poll seconds")
    args = parser.parse_args(argv)
    args.package = args.package or PACKAGES["local" if args.preset == "local" else "cluster"]
    args.run_name = args.run_name or f"ppminilm-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        try:
            given = json.loads(args.arguments)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--arguments / KFP_ARGUMENTS is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise ConfigError("--arguments / KFP_ARGUMENTS: expected a JSON object")
        _, params = load_package(args.package)
        arguments = preset_arguments(args.preset, given, args.run_name)
        check_arguments(arguments, params, where=f"arguments for {args.package.name}")
        if not args.host:
            raise ConfigError("no KFP API host: set KFP_HOST or pass --host")
    except ConfigError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    try:
        return submit(args, arguments, os.environ.get("KFP_TOKEN"))
    except SubmitError as exc:
        logger.error("%s", exc)
        return exc.exit_code
    except Exception as exc:  # kfp raises urllib3/ApiException subclasses for server trouble
        first = str(exc).splitlines()[0] if str(exc) else ""
        logger.error(
            "talking to %s failed: %s: %s (check KFP_HOST, the network and KFP_TOKEN)",
            args.host,
            type(exc).__name__,
            first,
        )
        return EXIT_INFRA


if __name__ == "__main__":
    sys.exit(main())
