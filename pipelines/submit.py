"""Submit the compiled pipeline to a Kubeflow Pipelines API server (``make submit``).

Connection settings come from flags or the environment: ``KFP_HOST`` (API endpoint, e.g.
``https://kubeflow.example.com/pipeline``), ``KFP_NAMESPACE``, ``KFP_EXPERIMENT``,
``KFP_TOKEN`` (bearer token, e.g. a service-account token in CI; never printed),
``KFP_PROFILE``, ``KFP_SERVICE_ACCOUNT`` and ``KFP_ARGUMENTS`` (JSON of pipeline parameters).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("ppminilm.submit")

#: Exit codes: 2 = bad arguments/package, 3 = the API server could not be reached or refused.
EXIT_USAGE, EXIT_INFRA = 2, 3


def cluster_arguments(profile: str) -> dict[str, Any]:
    """Default run parameters for a profile (the cluster runs the CLUE tasks and seed grid)."""
    if profile == "local":
        return {"profile": "local"}
    from ppminilm.config import CLUE_TASKS, GridConfig

    return {
        "profile": profile,
        "tasks": list(CLUE_TASKS),
        "grid": GridConfig().points(),
        "data_source": "clue",
        "use_gpu": True,
    }


def submit(
    package: Path,
    *,
    host: str,
    namespace: str,
    experiment: str,
    run_name: str,
    arguments: dict[str, Any],
    token: str | None = None,
    enable_caching: bool = True,
    service_account: str = "",
) -> dict[str, str]:
    """Create a run of a compiled pipeline package.

    Args:
        package: Compiled pipeline YAML.
        host: KFP API endpoint.
        namespace: Kubeflow profile namespace.
        experiment: Experiment name (created if missing).
        run_name: Name of the run.
        arguments: Pipeline parameters.
        token: Bearer token for the API server.
        enable_caching: Reuse cached step outputs.
        service_account: Kubernetes service account of the run's pods (``pipeline-runner``
            from manifests/ may create the multi-node distillation PaddleJob).

    Returns:
        ``{"run_id": ..., "run_url": ...}``.
    """
    import kfp

    if not package.is_file():
        raise FileNotFoundError(f"{package}: compiled pipeline not found (run `make compile`)")
    client = kfp.Client(host=host, namespace=namespace, existing_token=token or None)
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
        enable_caching=enable_caching,
        service_account=service_account or None,
    )
    run_id = result.run_id
    url = f"{host.rstrip('/')}/#/runs/details/{run_id}"
    return {"run_id": run_id, "run_url": url}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", type=Path, default=Path("pipelines/compiled/ppminilm.yaml"))
    parser.add_argument("--host", default=env.get("KFP_HOST", ""))
    parser.add_argument("--namespace", default=env.get("KFP_NAMESPACE", "kubeflow"))
    parser.add_argument("--experiment", default=env.get("KFP_EXPERIMENT", "ppminilm"))
    parser.add_argument("--profile", default=env.get("KFP_PROFILE", "cluster"))
    parser.add_argument("--run-name", default="")
    parser.add_argument(
        "--arguments",
        default=env.get("KFP_ARGUMENTS", "{}"),
        help="JSON pipeline parameters (merged over the profile's)",
    )
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument(
        "--service-account", default=env.get("KFP_SERVICE_ACCOUNT", "pipeline-runner")
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.host:
        logger.error("no KFP API host: set KFP_HOST or pass --host")
        return EXIT_USAGE
    try:
        extra = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        logger.error("--arguments / KFP_ARGUMENTS is not valid JSON: %s", exc)
        return EXIT_USAGE
    arguments = {**cluster_arguments(args.profile), **extra}
    run_name = args.run_name or f"ppminilm-{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out = submit(
            args.package,
            host=args.host,
            namespace=args.namespace,
            experiment=args.experiment,
            run_name=run_name,
            arguments=arguments,
            token=env.get("KFP_TOKEN"),
            enable_caching=not args.no_cache,
            service_account=args.service_account,
        )
    except FileNotFoundError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    except Exception as exc:  # kfp raises urllib3/ApiException subclasses for server trouble
        logger.error(
            "submitting to %s failed: %s: %s (check KFP_HOST, the network and KFP_TOKEN)",
            args.host,
            type(exc).__name__,
            str(exc).splitlines()[0] if str(exc) else "",
        )
        return EXIT_INFRA
    print(f"run {out['run_id']} submitted: {out['run_url']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
