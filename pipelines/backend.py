"""What the compiled pipeline needs from the KFP backend: the supported version range and why.

Facts (checked in the upstream sources at the tags named):

* ``dsl.Collected`` of artifacts out of a ``ParallelFor`` (the grid's models, every task's
  results) needs backend >= 2.14.
* ``kubernetes.set_security_context`` writes ``securityContext`` (field 18 of
  ``KubernetesExecutorConfig``), which the backend's protobuf only knows from 2.16.0 on; up to
  2.15 the API server's Argo compiler parses each executor's Kubernetes config with a strict
  ``protojson.Unmarshal`` (``backend/src/v2/compiler/argocompiler/container.go``), so an unknown
  field fails every run at creation. Hence the floor: 2.16.0.
* kubeflow/pipelines#12390 (open): a ``ParallelFor`` inside a ``dsl.ExitHandler`` fails at run
  time (2.14.x); #13321: loop status does not reach the exit handler on 2.16. The pipeline has
  no exit handler (see ``pipelines/ppminilm.py``).
* kubeflow/pipelines#13273 (open): dict loop items crossing an ``If``/``ExitHandler`` boundary
  are wired wrongly by the compiler. Our grid loop's dict items are used only by the task
  directly inside the loop, in a sub-pipeline with no condition or exit handler;
  ``tests/pipelines/test_policy.py`` checks the compiled wiring.

The top of the range is the newest backend the SDK pins were tested against (kfp 2.17.3,
kfp-server-api 2.17.3): newer backends are accepted with a warning.
"""

from __future__ import annotations

import re

#: Oldest backend the compiled pipeline runs on, and why (shown when submit refuses).
BACKEND_FLOOR = (2, 16, 0)
FLOOR_REASON = (
    "the pipeline sets kubernetes.set_security_context on every task (KubernetesExecutorConfig "
    "field securityContext, known to the backend from 2.16.0; older API servers reject the run), "
    "and collects artifacts from ParallelFor loops (2.14+)"
)
#: Newest backend minor release tested (kfp / kfp-server-api 2.17.3).
BACKEND_TESTED = (2, 17)
SUPPORTED_RANGE = ">=2.16.0, tested up to 2.17.x"

#: ``KubernetesExecutorConfig`` messages and their JSON field names at backend 2.16.0
#: (kubernetes_platform/proto/kubernetes_executor_config.proto), for the messages the pipeline
#: uses: a compiled field outside these is one the floor backend would reject.
K8S_FIELDS_AT_FLOOR: dict[str, dict[str, str]] = {
    "KubernetesExecutorConfig": {
        "secretAsVolume": "",
        "secretAsEnv": "SecretAsEnv",
        "pvcMount": "",
        "nodeSelector": "NodeSelector",
        "podMetadata": "",
        "imagePullSecret": "",
        "imagePullPolicy": "",
        "configMapAsVolume": "",
        "configMapAsEnv": "ConfigMapAsEnv",
        "activeDeadlineSeconds": "",
        "fieldPathAsEnv": "FieldPathAsEnv",
        "tolerations": "Toleration",
        "genericEphemeralVolume": "",
        "nodeAffinity": "",
        "podAffinity": "",
        "enabledSharedMemory": "",
        "emptyDirMounts": "EmptyDirMount",
        "securityContext": "SecurityContext",
    },
    "SecretAsEnv": {
        "secretName": "",
        "keyToEnv": "SecretKeyToEnvMap",
        "optional": "",
        "secretNameParameter": "",
    },
    "SecretKeyToEnvMap": {"secretKey": "", "envVar": ""},
    "ConfigMapAsEnv": {
        "configMapName": "",
        "keyToEnv": "ConfigMapKeyToEnvMap",
        "configMapNameParameter": "",
        "optional": "",
    },
    "ConfigMapKeyToEnvMap": {"configMapKey": "", "envVar": ""},
    "NodeSelector": {"labels": "", "nodeSelectorJson": ""},
    "FieldPathAsEnv": {"name": "", "fieldPath": ""},
    "Toleration": {
        "key": "",
        "operator": "",
        "value": "",
        "effect": "",
        "tolerationSeconds": "",
        "tolerationJson": "",
    },
    "EmptyDirMount": {"volumeName": "", "mountPath": "", "medium": "", "sizeLimit": ""},
    "SecurityContext": {"runAsUser": "", "runAsGroup": "", "runAsNonRoot": ""},
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def parse_version(tag: str) -> tuple[int, int, int] | None:
    """``"2.16.0"`` / ``"v2.16.0-rc.1"`` -> ``(2, 16, 0)``; None when it is no release tag."""
    match = _VERSION.match(tag.strip()) if isinstance(tag, str) else None
    if match is None:
        return None
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def unknown_k8s_fields(config: dict, message: str = "KubernetesExecutorConfig") -> list[str]:
    """Fields of one compiled executor's Kubernetes config the floor backend does not know.

    Args:
        config: ``platforms.kubernetes.deploymentSpec.executors[<executor>]`` of a package.
        message: Protobuf message ``config`` is an instance of.

    Returns:
        Dotted paths of the unknown fields (empty when the floor backend accepts it).
    """
    known = K8S_FIELDS_AT_FLOOR[message]
    problems = []
    for key, value in config.items():
        if key not in known:
            problems.append(f"{message}.{key}")
            continue
        child = known[key]
        if not child:
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                problems.extend(f"{key}.{p}" for p in unknown_k8s_fields(item, child))
    return problems
