"""Policy checks on both compiled packages: storage env, bounded loops, GPU memory and retries,
security context, timeouts, GPU quota, backend-floor fields, loop-item wiring, images."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from pipelines.backend import unknown_k8s_fields
from pipelines.compile import CLUSTER_YAML, PIPELINE_YAML, compile_all
from ppminilm.cluster import platform

ROOT = Path(__file__).resolve().parents[2]
GPU_QUOTA_FILE = ROOT / "manifests/overlays/cluster/profile-namespace/quota-gpu.yaml"


def _load(path: Path) -> tuple[dict, dict]:
    pipeline, plat = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    return pipeline, plat["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module", params=[PIPELINE_YAML, CLUSTER_YAML], ids=lambda p: p.name)
def package(request) -> tuple[dict, dict]:
    return _load(request.param)


def _executor_components(pipeline: dict) -> dict[str, dict]:
    """executor label -> its component spec."""
    return {c["executorLabel"]: c for c in pipeline["components"].values() if "executorLabel" in c}


def test_every_executor_that_touches_storage_gets_endpoint_and_credentials(package):
    pipeline, k8s = package
    touching = [
        label for label, comp in _executor_components(pipeline).items()
        if any(p.endswith("_uri") for p in comp.get("inputDefinitions", {}).get("parameters", {}))
    ]  # fmt: skip
    assert len(touching) >= 6, touching  # build-data, teacher, distill in both branches
    for label in touching:
        cfg = k8s[label]
        (cm,) = cfg["configMapAsEnv"]
        assert cm["configMapName"] == platform.STORAGE_CONFIGMAP and not cm["optional"]
        assert {m["envVar"] for m in cm["keyToEnv"]} == set(platform.STORAGE_CONFIG_KEYS)
        (secret,) = cfg["secretAsEnv"]
        assert secret["secretName"] == platform.S3_SECRET_NAME
        assert {m["envVar"]: m["secretKey"] for m in secret["keyToEnv"]} == platform.S3_SECRET_KEYS


def test_every_loop_is_bounded(package):
    pipeline, _ = package
    loops = [
        task for comp in pipeline["components"].values()
        for task in comp.get("dag", {}).get("tasks", {}).values() if "parameterIterator" in task
    ]  # fmt: skip
    assert len(loops) == 6  # tasks, grid and the search's widths, in both branches
    for task in loops:
        assert task["iteratorPolicy"]["parallelismLimit"] >= 1, task["taskInfo"]


@pytest.mark.parametrize("branch", ["cpu", "gpu"])
def test_widths_loop_is_bounded_by_its_parallelism(package, branch):
    """issue 21: per task, one OFA run, then a loop over the widths bounded by parallelism."""
    pipeline, _ = package
    recipe = pipeline["components"][f"comp-task-recipe-{branch}"]["dag"]["tasks"]
    (loop,) = [t for t in recipe.values() if t["taskInfo"]["name"] == "widths"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--widths"
    limit = loop["iteratorPolicy"]["parallelismLimit"]
    assert limit == platform.WIDTH_LOOP_PARALLELISM[branch] >= 1
    assert loop["dependentTasks"] == ["prune"]  # one supernet trained for every width first
    body = pipeline["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    stages = sorted(re.sub(r"(-\d+)+$", "", t["componentRef"]["name"]) for t in body.values())
    assert stages == ["comp-benchmark", "comp-benchmark", "comp-quantize", "comp-take-width"]
    # the width reaches take-width as the loop item, and prune trains the same list
    take = next(t for t in body.values() if t["componentRef"]["name"].startswith("comp-take"))
    assert take["inputs"]["parameters"]["width"]["componentInputParameter"] == (
        "pipelinechannel--widths-loop-item"
    )
    prune = recipe["prune"]["inputs"]["parameters"]["widths"]
    assert prune["componentInputParameter"] == "widths"
    # the selection and the timing fan in every width's candidates
    loop_name = next(k for k, t in recipe.items() if t is loop)
    for consumer, inputs in (
        ("select-candidate", ("pruned_results", "int8_results", "pruned", "int8")),
        ("time-rows", ("pruned", "int8")),
    ):
        artifacts = recipe[consumer]["inputs"]["artifacts"]
        for name in inputs:
            assert artifacts[name]["taskOutputArtifact"]["producerTask"] == loop_name, name


def _seconds(text: str) -> float:
    return float(text.rstrip("s"))


def test_every_task_has_resources_deadline_and_non_root_user(package):
    pipeline, k8s = package
    for label, executor in pipeline["deploymentSpec"]["executors"].items():
        res = executor["container"]["resources"]
        for key in ("resourceCpuRequest", "resourceCpuLimit", "resourceMemoryRequest",
                    "resourceMemoryLimit"):  # fmt: skip
            assert res.get(key), (label, key)
        cfg = k8s[label]
        assert int(cfg["activeDeadlineSeconds"]) > 0, label
        assert cfg["securityContext"] == {
            "runAsUser": str(platform.IMAGE_UID),
            "runAsGroup": str(platform.IMAGE_GID),
            "runAsNonRoot": True,
        }, label
        shm = [m for m in cfg.get("emptyDirMounts", []) if m["mountPath"] == "/dev/shm"]
        if shm:  # a memory emptyDir counts against the limit: the limit holds both
            limit = platform.quantity(res["resourceMemoryLimit"])
            request = platform.quantity(res["resourceMemoryRequest"])
            assert shm[0]["medium"] == "Memory"
            assert limit >= request + platform.quantity(shm[0]["sizeLimit"]), label


def _gpu_tasks(pipeline: dict) -> list[tuple[dict, str]]:
    return [
        (task, comp["executorLabel"])
        for parent in pipeline["components"].values()
        for task in parent.get("dag", {}).get("tasks", {}).values()
        if "executorLabel" in (comp := pipeline["components"][task["componentRef"]["name"]])
        and pipeline["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]
        .get("resources", {}).get("accelerator")
    ]  # fmt: skip


def test_every_gpu_task_has_memory_and_a_retry_that_outlasts_its_attempts(package):
    pipeline, k8s = package
    gpu = _gpu_tasks(pipeline)
    assert gpu
    for task, label in gpu:
        res = pipeline["deploymentSpec"]["executors"][label]["container"]["resources"]
        assert platform.quantity(res["resourceMemoryLimit"]) >= 8 * 2**30, label
        retry = task["retryPolicy"]
        assert retry["maxRetryCount"] >= 1, label
        deadline = int(k8s[label]["activeDeadlineSeconds"])
        attempts = retry["maxRetryCount"] + 1
        # Argo counts maxDuration from the first start: every attempt must fit inside it.
        assert _seconds(retry["backoffMaxDuration"]) >= attempts * deadline, label


def _param_default(pipeline: dict, text: str) -> int:
    match = re.fullmatch(r"\{\{\$\.inputs\.parameters\['pipelinechannel--(\w+)'\]\}\}", text)
    assert match, text
    return int(pipeline["root"]["inputDefinitions"]["parameters"][match[1]]["defaultValue"])


def peak_gpus(pipeline: dict, component: str) -> int:
    """Most GPUs a DAG can hold at once: the heaviest set of its tasks none of which depends
    (transitively) on another; a loop counts parallelismLimit times its body."""
    spec = pipeline["root"] if component == "root" else pipeline["components"][component]
    tasks = spec["dag"]["tasks"]
    weight = {}
    for name, task in tasks.items():
        ref = task["componentRef"]["name"]
        comp = pipeline["components"][ref]
        if "dag" in comp:
            w = peak_gpus(pipeline, ref)
            if "parameterIterator" in task:
                w *= task["iteratorPolicy"]["parallelismLimit"]
        else:
            acc = pipeline["deploymentSpec"]["executors"][comp["executorLabel"]]["container"]
            count = acc.get("resources", {}).get("accelerator", {}).get("resourceCount", "0")
            w = int(count) if str(count).isdigit() else _param_default(pipeline, count)
        weight[name] = w
    ancestors: dict[str, set[str]] = {}

    def up(name: str) -> set[str]:
        if name not in ancestors:
            deps = set(tasks[name].get("dependentTasks", []))
            ancestors[name] = deps.union(*(up(d) for d in deps)) if deps else set()
        return ancestors[name]

    names = [n for n in tasks if weight[n]]
    best = 0
    for r in range(1, len(names) + 1):
        for group in itertools.combinations(names, r):
            if all(a not in up(b) and b not in up(a) for a, b in itertools.combinations(group, 2)):
                best = max(best, sum(weight[n] for n in group))
    return best


def test_peak_gpus_fit_the_cluster_quota(package):
    pipeline, _ = package
    quota = yaml.safe_load(GPU_QUOTA_FILE.read_text())["spec"]["hard"]
    gpus = int(quota[f"requests.{platform.V100_POOL.gpu_resource}"])
    peak = peak_gpus(pipeline, "root")
    assert 0 < peak <= gpus, (peak, gpus)
    # and the bound is tight enough to mean something: the loops alone reach their product,
    # and the single-node distill step (issue 14) holds gpus_per_node GPUs (8: peak 8, not 6)
    tasks = platform.TASK_LOOP_PARALLELISM["gpu"]
    loops = tasks * platform.GRID_LOOP_PARALLELISM["gpu"]
    # issue 21: per width 2 T4s (quantize beside the pruned FP32 benchmark), and the FP32
    # reference's benchmark may still run beside the widths loop
    widths = tasks * (platform.WIDTH_LOOP_PARALLELISM["gpu"] * 2 + 1)
    distill_gpus = int(pipeline["root"]["inputDefinitions"]["parameters"]["gpus_per_node"][
        "defaultValue"
    ])  # fmt: skip
    assert peak >= loops
    assert peak == max(loops, widths, distill_gpus), (peak, loops, widths, distill_gpus)


def test_kubernetes_fields_are_known_to_the_floor_backend(package):
    _, k8s = package
    for label, cfg in k8s.items():
        assert unknown_k8s_fields(cfg) == [], label


def test_dict_loop_items_stay_inside_their_loop(package):
    """kubeflow/pipelines#13273: dict-item sub-variables must not leak into parent DAGs."""
    pipeline, _ = package
    for name, comp in pipeline["components"].items():
        params = comp.get("inputDefinitions", {}).get("parameters", {})
        subvars = [p for p in params if "-subvar-" in p]
        if not subvars:
            continue
        assert name.startswith("comp-for-loop"), (name, subvars)
        users = [t for t in comp["dag"]["tasks"].values()
                 if any(p.get("componentInputParameter") in subvars
                        for p in t.get("inputs", {}).get("parameters", {}).values())]  # fmt: skip
        assert users and all("executorLabel" in pipeline["components"][t["componentRef"]["name"]]
                             for t in users), name  # fmt: skip


def test_images_come_from_the_registry_given_at_compile_time(tmp_path: Path):
    digest = "sha256:" + "b" * 64
    written = compile_all(tmp_path / "ppminilm.yaml", tmp_path / "components",
                          registry="registry.example.com/ml", tag="rc1",
                          digests={"gpu-train": digest})  # fmt: skip
    for path in written:
        docs = list(yaml.safe_load_all(path.read_text()))
        images = {e["container"]["image"] for e in docs[0]["deploymentSpec"]["executors"].values()}
        assert images and all(i.startswith("registry.example.com/ml/ppminilm-") for i in images)
        assert all(":rc1" in i for i in images)
    pipeline, _ = _load(tmp_path / "ppminilm-cluster.yaml")
    images = {e["container"]["image"] for e in pipeline["deploymentSpec"]["executors"].values()}
    assert f"registry.example.com/ml/ppminilm-gpu-train:rc1@{digest}" in images
    # the PaddleJob's workers get the retargeted image too (issue 13 on issue 14's step)
    env_images = {
        v["value"] for e in pipeline["deploymentSpec"]["executors"].values()
        for v in e["container"].get("env", []) if v["name"] == "PPMINILM_WORKER_IMAGE"
    }  # fmt: skip
    assert env_images == {f"registry.example.com/ml/ppminilm-gpu-train:rc1@{digest}"}
    with pytest.raises(ValueError, match="latest"):
        platform.image_refs(tag="latest")
    with pytest.raises(ValueError, match="sha256"):
        platform.image_refs(digests={"cpu": "sha256:short"})


def test_cluster_package_defaults_are_the_seed_recipe():
    from ppminilm.config import CLUE_TASKS, GridConfig

    pipeline, _ = _load(CLUSTER_YAML)
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    assert params["tasks"]["defaultValue"] == list(CLUE_TASKS)
    assert len(params["grid"]["defaultValue"]) == len(GridConfig().points()) == 9
    assert params["use_gpu"]["defaultValue"] is True
    assert params["profile"]["defaultValue"] == "cluster"
    assert params["data_source"]["defaultValue"] == "clue"


def test_every_deadline_is_its_own_branch_row(package):
    """Each executor's pod deadline is the table's row for its stage and branch.

    This guards a KFP SDK merge quirk: when a sub-pipeline (our per-task recipe, compiled for
    both branches) is merged, the second branch's executor configs are merged into the first
    branch's executors of the same name before they are renamed, so a key both branches set
    with different values ends up with the second branch's value everywhere. The table keeps
    such keys equal across branches for the recipe's stages; this test fails if they diverge.
    """
    from ppminilm.cluster.jobs import WORKER_IMAGE_ENV

    pipeline, k8s = package
    components = _executor_components(pipeline)
    for label, executor in pipeline["deploymentSpec"]["executors"].items():
        stage = re.sub(r"(-\d+)+$", "", components[label]["executorLabel"].removeprefix("exec-"))
        env = {e["name"] for e in executor["container"].get("env", [])}
        if WORKER_IMAGE_ENV in env:
            row = platform.task_resources("paddlejob-distill", gpu=True)
        else:
            row = platform.task_resources(stage, gpu="nodeSelector" in k8s[label])
        assert int(k8s[label]["activeDeadlineSeconds"]) == row.timeout_s, (label, stage)


def test_serve_step_serves_the_search_choice(package):
    """issues 20, 21: each task recipe ends with the InferenceService of the model the search
    chose, on CPU nodes in the CPU branch and the T4 pool in the GPU branch, labelled with the
    run."""
    pipeline, _ = package
    pools = {}
    for name in ("comp-task-recipe-cpu", "comp-task-recipe-gpu"):
        tasks = pipeline["components"][name]["dag"]["tasks"]
        (serve,) = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-serve")]
        model = serve["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert model["outputArtifactKey"] == "chosen"
        producer = tasks[model["producerTask"]]
        assert producer["componentRef"]["name"].startswith("comp-select-candidate")
        assert model["producerTask"] in serve["dependentTasks"]
        params = serve["inputs"]["parameters"]
        assert params["run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
        pools[name] = params["pool"]["runtimeValue"]["constant"]
    assert pools == {"comp-task-recipe-cpu": "cpu", "comp-task-recipe-gpu": "t4"}
    assert set(pools.values()) == set(platform.SERVING_POOLS)
