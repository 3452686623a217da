"""Checks of manifests/: every overlay builds, validates offline against the Kubernetes schemas,
passes yamllint, carries no plaintext secret, and agrees with ppminilm.cluster.platform.

Each check is a function returning a list of problems, so the same code runs on the committed
tree (expecting none) and on deliberately broken copies (expecting some): the checks can fail.
Builds run on a temporary copy with the example env file standing in for the git-ignored
credentials, so no real secret is ever needed or written into the working tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ppminilm.cluster import paddlejob, platform

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("local-kind", "cluster")
ENV_FILE = "base/s3-credentials.env"
#: Kubernetes minor version whose schemas the objects must satisfy (GKE/EKS stable channels).
K8S_SCHEMA_VERSION = "1.30"
YAMLLINT_CONFIG = MANIFESTS / ".yamllint.yaml"
#: Required verbs on paddlejobs.kubeflow.org for the pipeline-runner service account.
PADDLEJOB_VERBS = {"create", "get", "list", "watch", "patch", "delete"}

#: Mapping keys whose literal value would be a credential (compared lower-case, letters/digits).
_SECRET_KEYS = re.compile(
    r"^(password|passwd|secret|secretkey|secretaccesskey|accesskey|accesskeyid|token|apikey"
    r"|privatekey|rootuser|rootpassword|miniorootuser|miniorootpassword|awsaccesskeyid"
    r"|awssecretaccesskey)$"
)
#: Env var names that must come from a Secret (valueFrom), never a literal value.
_SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|ROOT_USER|API_KEY|PRIVATE_KEY", re.I)
#: Text that is a credential wherever it appears (AWS key id, PEM key, MinIO's default).
_SECRET_TEXT = re.compile(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY-----|\bminioadmin\b")
_PLACEHOLDER = "REPLACE_ME"


def _missing(message: str) -> None:
    """Skip locally, fail in CI (which installs every tool the checks need)."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str) -> str:
    """Path of a CLI tool from requirements/apt.txt."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (apt-get install -y {name}; see requirements/apt.txt)")
    assert path is not None
    return path


def staged_copy(dest: Path) -> Path:
    """Copy manifests/ to ``dest`` with the example credentials as the env file."""
    shutil.copytree(MANIFESTS, dest, ignore=shutil.ignore_patterns("*.env"))
    shutil.copy(dest / f"{ENV_FILE}.example", dest / ENV_FILE)
    return dest


def kustomize_build(overlay_dir: Path) -> list[dict[str, Any]]:
    """Objects of ``kubectl kustomize overlay_dir``; AssertionError with kubectl's message."""
    kubectl = require_tool("kubectl")
    proc = subprocess.run(
        [kubectl, "kustomize", str(overlay_dir)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay_dir.name} failed: {proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def ident(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def find(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def schema_problems(objs: list[dict[str, Any]]) -> list[str]:
    """Strict offline validation of every object against the Kubernetes JSON schemas."""
    try:
        import kubernetes_validate
    except ImportError:
        _missing("kubernetes-validate is not installed (pin in requirements/constraints.txt)")

    problems = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.absolute_path)
            problems.append(f"{ident(obj)}: {exc.message} (at {where or '<root>'})")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{ident(obj)}: no schema: {exc}")
    return problems


def lint_problems(root: Path) -> list[str]:
    """``yamllint --strict`` findings for every YAML file under ``root``."""
    yamllint = require_tool("yamllint")
    proc = subprocess.run(
        [yamllint, "--strict", "-f", "parsable", "-c", str(YAMLLINT_CONFIG), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 and not lines:
        lines = [proc.stderr.strip() or f"yamllint exited {proc.returncode}"]
    return lines


def _walk_for_secrets(node: Any, where: str) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("kind") == "Secret" and (node.get("data") or node.get("stringData")):
            yield f"{where}: Secret with inline data; generate it from the git-ignored env file"
        name = node.get("name")
        if isinstance(name, str) and _SECRET_ENV.search(name) and "value" in node:
            yield f"{where}: env {node['name']} has a literal value; use valueFrom.secretKeyRef"
        for key, value in node.items():
            norm = re.sub(r"[^a-z0-9]", "", str(key).lower())
            if _SECRET_KEYS.match(norm) and isinstance(value, str | int | float) and value != "":
                yield f"{where}: key {key!r} has a literal value"
            yield from _walk_for_secrets(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_for_secrets(item, f"{where}[{i}]")
    elif isinstance(node, str) and "\n" in node and ":" in node:
        # Embedded YAML (kfp-launcher's providers block) is checked like a file.
        try:
            inner = yaml.safe_load(node)
        except yaml.YAMLError:
            return
        if isinstance(inner, dict | list):
            yield from _walk_for_secrets(inner, f"{where}(embedded)")


def secret_problems(root: Path) -> list[str]:
    """Plaintext credentials in the files under ``root`` that git would commit."""
    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.suffix == ".env":  # git-ignored by .gitignore; never committed
            continue
        text = path.read_text(errors="replace")
        if match := _SECRET_TEXT.search(text):
            problems.append(f"{rel}: credential-looking text {match.group(0)[:12]!r}...")
        if path.name.endswith(".env.example"):
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    value = line.split("=", 1)[1] if "=" in line else ""
                    if not value.startswith(_PLACEHOLDER):
                        problems.append(f"{rel}:{n}: example value is not a {_PLACEHOLDER} stub")
        elif path.suffix in (".yaml", ".yml"):
            for i, doc in enumerate(yaml.safe_load_all(text)):
                problems.extend(_walk_for_secrets(doc, f"{rel}#{i}"))
    return problems


def pool_lines(pool: platform.NodePool) -> dict[str, str]:
    """How manifests and docs spell a pool: node selector, taint, GPU resource."""
    ((label, value),) = pool.node_selector.items()
    return {
        "accelerator": pool.accelerator,
        "nodeSelector": f"{label}={value}",
        "taint": f"{pool.taint_key}={pool.taint_value}:{pool.taint_effect}",
        "gpuResource": pool.gpu_resource,
    }


def node_pool_problems(objs: list[dict[str, Any]], docs: dict[str, str]) -> list[str]:
    """The node-pool ConfigMap and the docs against ppminilm.cluster.platform.NODE_POOLS."""
    problems = []
    data = find(objs, "ConfigMap", "ppminilm-node-pools").get("data", {})
    for name, pool in platform.NODE_POOLS.items():
        for field, expected in pool_lines(pool).items():
            got = data.get(f"{name}.{field}")
            if got != expected:
                problems.append(
                    f"ppminilm-node-pools {name}.{field}={got!r}, platform: {expected!r}"
                )
            for doc_name, text in docs.items():
                if expected not in text:
                    problems.append(f"{doc_name} does not mention {name} {field} {expected!r}")
    known = {pool.accelerator for pool in platform.NODE_POOLS.values()}
    for doc_name, text in [("ConfigMap", str(data)), *docs.items()]:
        for accel in set(re.findall(r"nvidia-tesla-[a-z0-9]+", text)) - known:
            problems.append(f"{doc_name} names accelerator {accel!r}, unknown to platform.py")
    return problems


def pool_docs(root: Path) -> dict[str, str]:
    return {
        "manifests/README.md": (root / "README.md").read_text(),
        "overlays/cluster/kustomization.yaml": (
            root / "overlays/cluster/kustomization.yaml"
        ).read_text(),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    root = staged_copy(tmp_path_factory.mktemp("manifests") / "manifests")
    return {overlay: kustomize_build(root / "overlays" / overlay) for overlay in OVERLAYS}


def test_every_overlay_is_listed() -> None:
    on_disk = {p.parent.name for p in MANIFESTS.glob("overlays/*/kustomization.yaml")}
    assert on_disk == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_expected_objects(built: dict, overlay: str) -> None:
    objs = built[overlay]
    for kind, name in [
        ("Namespace", platform.NAMESPACE),
        ("Secret", platform.S3_SECRET_NAME),
        ("ConfigMap", "kfp-launcher"),
        ("ConfigMap", paddlejob.STORAGE_CONFIGMAP),
        ("Deployment", "minio"),
        ("Service", "minio"),
        ("PersistentVolumeClaim", "minio-data"),
        ("Job", "minio-bucket-init"),
        ("ServiceAccount", "pipeline-runner"),
        ("NetworkPolicy", "minio-same-namespace-only"),
        ("ResourceQuota", "ppminilm-quota"),
        ("LimitRange", "ppminilm-defaults"),
    ]:
        find(objs, kind, name)
    for obj in objs:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == platform.NAMESPACE, ident(obj)
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert [s["metadata"]["name"] for s in secrets] == [platform.S3_SECRET_NAME]
    assert set(secrets[0]["data"]) == set(platform.S3_SECRET_KEYS.values())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_kubernetes_schema(built: dict, overlay: str) -> None:
    assert schema_problems(built[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kfp_launcher_points_at_bucket_and_secret(built: dict, overlay: str) -> None:
    data = find(built[overlay], "ConfigMap", "kfp-launcher")["data"]
    assert data["defaultPipelineRoot"] == f"s3://{platform.S3_BUCKET}/pipeline-root"
    s3 = yaml.safe_load(data["providers"])["s3"]["default"]
    assert s3["credentials"]["fromEnv"] is False
    assert s3["credentials"]["secretRef"] == {
        "secretName": platform.S3_SECRET_NAME,
        "accessKeyKey": platform.S3_SECRET_KEYS["AWS_ACCESS_KEY_ID"],
        "secretKeyKey": platform.S3_SECRET_KEYS["AWS_SECRET_ACCESS_KEY"],
    }
    assert s3["endpoint"] == f"minio.{platform.NAMESPACE}.svc.cluster.local:9000"
    storage = find(built[overlay], "ConfigMap", paddlejob.STORAGE_CONFIGMAP)["data"]
    assert storage["PPMINILM_S3_ENDPOINT"] == f"http://{s3['endpoint']}"
    job = find(built[overlay], "Job", "minio-bucket-init")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["S3_BUCKET"]["value"] == platform.S3_BUCKET


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_runner_may_manage_paddlejobs(built: dict, overlay: str) -> None:
    objs = built[overlay]
    binding = next(o for o in objs if o["kind"] == "RoleBinding")
    assert {
        "kind": "ServiceAccount",
        "name": "pipeline-runner",
        "namespace": platform.NAMESPACE,
    } in (binding["subjects"])
    role = find(objs, "Role", binding["roleRef"]["name"])
    rule = next(r for r in role["rules"] if "paddlejobs" in r["resources"])
    assert rule["apiGroups"] == ["kubeflow.org"]
    assert set(rule["verbs"]) >= PADDLEJOB_VERBS
    assert not any(o["kind"].startswith("Cluster") for o in objs), "namespace-scoped RBAC only"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_minio_reachable_from_namespace_only(built: dict, overlay: str) -> None:
    objs = built[overlay]
    policy = find(objs, "NetworkPolicy", "minio-same-namespace-only")["spec"]
    pod_labels = find(objs, "Deployment", "minio")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    sources = [peer for rule in policy["ingress"] for peer in rule["from"]]
    assert sources == [{"podSelector": {}}], "only pods of the same namespace"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_quota_covers_the_overlay(built: dict, overlay: str) -> None:
    hard = find(built[overlay], "ResourceQuota", "ppminilm-quota")["spec"]["hard"]
    gpus = int(hard[f"requests.{platform.V100_POOL.gpu_resource}"])
    if overlay == "local-kind":
        assert gpus == 0
    else:
        default = paddlejob.PaddleJobSpec(name="quota-check")
        assert gpus >= default.workers * default.gpus_per_worker
    limits = find(built[overlay], "LimitRange", "ppminilm-defaults")["spec"]["limits"]
    assert any(item["type"] == "Container" and "default" in item for item in limits)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(built: dict, overlay: str) -> None:
    for obj in built[overlay]:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            image = container["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{ident(obj)}: {image} is not pinned"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_node_pools_agree_with_platform(built: dict, overlay: str) -> None:
    assert node_pool_problems(built[overlay], pool_docs(MANIFESTS)) == []


def test_paddlejob_agrees_with_platform_and_manifests(built: dict) -> None:
    spec = paddlejob.PaddleJobSpec(name="distill-check", distill_args=("--max-steps", "10"))
    job = paddlejob.build_paddlejob(spec)
    template = job["spec"]["paddleReplicaSpecs"]["Worker"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == platform.V100_POOL.node_selector
    (toleration,) = pod["tolerations"]
    taint = f"{toleration['key']}={toleration['value']}:{toleration['effect']}"
    assert taint == pool_lines(platform.V100_POOL)["taint"]
    # The pod template is a valid Pod, and everything it references exists in the manifests.
    as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", **template["metadata"]}}
    assert schema_problems([{**as_pod, "spec": pod}]) == []
    for overlay in OVERLAYS:
        objs = built[overlay]
        find(objs, "ServiceAccount", pod["serviceAccountName"])
        secret = find(objs, "Secret", spec.s3_secret_name)
        container = pod["containers"][0]
        for env in container["env"]:
            if "valueFrom" in env:
                assert env["valueFrom"]["secretKeyRef"]["key"] in secret["data"]
        for source in container["envFrom"]:
            find(objs, "ConfigMap", source["configMapRef"]["name"])


def test_no_plaintext_secrets_committed() -> None:
    assert secret_problems(MANIFESTS) == []


def test_real_env_file_is_git_ignored() -> None:
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(
        [git, "check-ignore", "-q", str(MANIFESTS / ENV_FILE)], cwd=REPO, check=False
    )
    assert proc.returncode == 0, f"manifests/{ENV_FILE} must be git-ignored"
    tracked = subprocess.run(
        [git, "ls-files", "manifests"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [f for f in tracked if f.endswith(".env")], "a credentials env file is tracked"


def test_yamllint_clean() -> None:
    assert lint_problems(MANIFESTS) == []


# --- the checks can fail: break a copy on purpose, one way per check -----------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _schema(root: Path) -> list[str]:
    return schema_problems(kustomize_build(root / "overlays/cluster"))


def _build(root: Path) -> list[str]:
    try:
        kustomize_build(root / "overlays/local-kind")
    except AssertionError as exc:
        return [str(exc)]
    return []


BREAKAGES: dict[str, tuple[Callable[[Path], None], Callable[[Path], list[str]]]] = {
    "wrong-type": (
        lambda r: _edit(r / "base/minio.yaml", "replicas: 1", 'replicas: "one"'),
        _schema,
    ),
    "unknown-field": (lambda r: _edit(r / "base/minio.yaml", "strategy:", "stratgy:"), _schema),
    "missing-resource": (
        lambda r: _edit(r / "base/kustomization.yaml", "- quota.yaml", "- quotas.yaml"),
        _build,
    ),
    "plaintext-secret": (
        lambda r: _edit(
            r / "base/minio.yaml",
            "            - name: MINIO_ROOT_PASSWORD\n",
            "            - name: MINIO_ROOT_PASSWORD\n              value: hunter2hunter2\n",
        ),
        secret_problems,
    ),
    "lint": (
        lambda r: _edit(r / "base/rbac.yaml", "kind: ServiceAccount", "kind:  ServiceAccount "),
        lint_problems,
    ),
    "node-pool-drift": (
        lambda r: _edit(
            r / "base/node-pools.yaml",
            "t4.taint: nvidia.com/gpu=present:NoSchedule",
            "t4.taint: nvidia.com/gpu=true:NoSchedule",
        ),
        lambda r: node_pool_problems(kustomize_build(r / "overlays/cluster"), pool_docs(r)),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_checks_fail_on_broken_copy(tmp_path: Path, breakage: str) -> None:
    root = staged_copy(tmp_path / "manifests")
    break_it, check = BREAKAGES[breakage]
    assert check(root) == [], "the unbroken copy must pass"
    break_it(root)
    problems = check(root)
    assert problems, f"breaking the copy ({breakage}) went unnoticed"
    print(f"{breakage}: {problems[0]}")
