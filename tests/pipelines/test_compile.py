"""The compiled pipeline IR: golden file, loops, condition, GPU placement, exit handler, secrets.

Regenerate the golden files with `make compile` after changing a component or the pipeline.
"""

import re
from pathlib import Path

import pytest
import yaml

from pipelines.compile import CLUSTER_YAML, COMPONENTS_DIR, PIPELINE_YAML, compile_all
from ppminilm.cluster.platform import (
    CPU_IMAGE,
    GPU_INFER_IMAGE,
    GPU_TRAIN_IMAGE,
    S3_SECRET_NAME,
    T4_POOL,
    V100_POOL,
)

REGENERATE = "stale compiled YAML: run `make compile` and commit the result"
#: Stages that train and must land on the V100 pool in the GPU branch.
V100_STAGES = {"pretrain-teacher", "distill", "finetune", "prune"}
#: Stages that run (or score models) where they will serve: the T4 pool in the GPU branch.
T4_STAGES = {"benchmark", "quantize"}
#: The accelerator count of the single-node distill step: the gpus_per_node parameter.
GPUS_PER_NODE = "{{$.inputs.parameters['pipelinechannel--gpus_per_node']}}"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    compile_all(out / "ppminilm.yaml", out / "components")
    return out


def _docs(path: Path) -> list:
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def ir(fresh):
    pipeline, platform = _docs(fresh / "ppminilm.yaml")
    return pipeline, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.mark.parametrize("golden", [PIPELINE_YAML, CLUSTER_YAML], ids=lambda p: p.name)
def test_golden_pipeline(fresh, golden):
    assert golden.is_file(), REGENERATE
    assert _docs(fresh / golden.name) == _docs(golden), REGENERATE


def test_golden_components(fresh):
    fresh_names = sorted(p.name for p in (fresh / "components").glob("*.yaml"))
    assert fresh_names == sorted(p.name for p in COMPONENTS_DIR.glob("*.yaml")), REGENERATE
    for name in fresh_names:
        assert _docs(fresh / "components" / name) == _docs(COMPONENTS_DIR / name), (
            f"{name}: {REGENERATE}"
        )


def _executor_of(pipeline: dict, component: str) -> str:
    return pipeline["components"][component]["executorLabel"]


def _tasks_by_stage(pipeline: dict) -> dict[str, list[str]]:
    """Map stage name -> executor labels of every task of that stage, over all sub-DAGs."""
    out: dict[str, list[str]] = {}
    for comp in pipeline["components"].values():
        for task in comp.get("dag", {}).get("tasks", {}).values():
            ref = task["componentRef"]["name"]
            if "executorLabel" in pipeline["components"][ref]:
                stage = re.sub(r"(-\d+)+$", "", ref.removeprefix("comp-"))
                out.setdefault(stage, []).append(_executor_of(pipeline, ref))
    return out


def test_grid_and_task_loops(ir):
    pipeline, _ = ir
    loops = {
        name: comp
        for name, comp in pipeline["components"].items()
        if name.startswith("comp-for-loop")
    }
    iterators = [c["inputDefinitions"]["parameters"] for c in loops.values()]
    names = " ".join(str(p) for p in iterators)
    assert "pipelinechannel--grid-loop-item" in names
    assert "pipelinechannel--tasks-loop-item" in names
    assert "pipelinechannel--widths-loop-item" in names
    # select-best consumes the grid's models collected over the loop
    for recipe in ("comp-task-recipe-cpu", "comp-task-recipe-gpu"):
        sel = pipeline["components"][recipe]["dag"]["tasks"]["select-best"]
        models = sel["inputs"]["artifacts"]["models"]["taskOutputArtifact"]
        assert models["producerTask"] == "for-loop-1"


def test_use_gpu_condition(ir):
    pipeline, _ = ir
    conditions = [
        t.get("triggerPolicy", {}).get("condition", "")
        for c in pipeline["components"].values()
        for t in c.get("dag", {}).get("tasks", {}).values()
    ]
    assert any("pipelinechannel--use_gpu" in c and "== true" in c for c in conditions)
    assert any("!(" in c and "use_gpu" in c for c in conditions)  # the Else branch


def test_gpu_placement(ir):
    pipeline, k8s = ir
    executors = pipeline["deploymentSpec"]["executors"]
    by_stage = _tasks_by_stage(pipeline)
    gpu_execs = [
        e
        for e, spec in executors.items()
        if spec["container"].get("resources", {}).get("accelerator")
    ]
    assert gpu_execs, "no task asks for a GPU"
    for stage in V100_STAGES | T4_STAGES:
        placed = [e for e in by_stage[stage] if e in gpu_execs]
        assert placed, f"{stage} has no GPU variant"
        assert any(e not in gpu_execs for e in by_stage[stage]), f"{stage} has no CPU variant"
        pool, image = (
            (T4_POOL, GPU_INFER_IMAGE) if stage in T4_STAGES else (V100_POOL, GPU_TRAIN_IMAGE)
        )
        for e in placed:
            container = executors[e]["container"]
            assert container["image"] == image, e
            assert container["resources"]["accelerator"]["resourceType"] == pool.gpu_resource
            count = container["resources"]["accelerator"]["resourceCount"]
            assert count == GPUS_PER_NODE if stage == "distill" else int(count) >= 1, (e, count)
            assert k8s[e]["nodeSelector"]["labels"] == pool.node_selector, e
            assert k8s[e]["tolerations"] == [
                {
                    "key": pool.taint_key,
                    "operator": "Equal",
                    "value": pool.taint_value,
                    "effect": pool.taint_effect,
                }
            ], e
            (shm,) = k8s[e]["emptyDirMounts"]
            assert {k: shm[k] for k in ("medium", "mountPath", "volumeName")} == {
                "medium": "Memory", "mountPath": "/dev/shm", "volumeName": "dshm"
            } and shm["sizeLimit"], e  # fmt: skip
    for e, spec in executors.items():
        if e not in gpu_execs:
            assert spec["container"]["image"] == CPU_IMAGE, e
            assert "nodeSelector" not in k8s.get(e, {}), e


def test_no_exit_handler_around_the_loops(ir):
    """kubeflow/pipelines#12390: a ParallelFor inside an ExitHandler fails at run time."""
    pipeline, _ = ir
    assert not [n for n in pipeline["components"] if n.startswith("comp-exit-handler")]


def test_ui_parameters_have_defaults(ir):
    pipeline, _ = ir
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    for name in ("profile", "tasks", "grid", "widths", "accuracy_budget", "use_gpu", "do_distill",
                 "overrides"):  # fmt: skip
        assert "defaultValue" in params[name], name
    assert params["use_gpu"]["defaultValue"] is False


def test_no_secret_values(fresh):
    text = (fresh / "ppminilm.yaml").read_text(encoding="utf-8")
    for path in (fresh / "components").glob("*.yaml"):
        text += path.read_text(encoding="utf-8")
    assert S3_SECRET_NAME in text  # referenced by name...
    for pattern in (
        r"AKIA[0-9A-Z]{12,}",
        r"(?i)secret_?access_?key\s*[:=]\s*['\"]?\w{8,}",
        r"(?i)password\s*[:=]\s*\S+",
        r"minioadmin",
        r"-----BEGIN",
    ):
        assert not re.search(pattern, text), pattern  # ...never by value


def _tasks(pipeline: dict) -> list[tuple[str, dict]]:
    """Every task of every DAG (root and components' sub-DAGs) as ``(task key, spec)``."""
    dags = [pipeline["root"]] + [c for c in pipeline["components"].values() if "dag" in c]
    return [(key, spec) for dag in dags for key, spec in dag["dag"]["tasks"].items()]


def test_every_task_has_a_display_name(ir):
    """The UI shows taskInfo.name: no auto-suffixed names like ``build-data-2``."""
    pipeline, _ = ir
    tasks = _tasks(pipeline)
    assert tasks
    control = ("comp-condition", "comp-for-loop", "comp-exit-handler")
    for key, spec in tasks:
        if spec["componentRef"]["name"].startswith(control):
            continue  # If/Else, ParallelFor and ExitHandler groups: named by the DSL
        name = spec["taskInfo"]["name"]
        assert name != key and not re.fullmatch(r"[a-z0-9-]+-\d+", name), (key, name)


def test_descriptions_are_plain_text(fresh):
    """KFP shows component and parameter descriptions verbatim: no RST markup."""
    text = (fresh / "ppminilm.yaml").read_text(encoding="utf-8")
    descriptions = re.findall(r"description: (.*)", text)
    assert descriptions
    assert not [d for d in descriptions if "``" in d or ":func:" in d]


def _task_and_executor(pipeline: dict, component: str, task: str) -> tuple[dict, str]:
    spec = pipeline["components"][component]["dag"]["tasks"][task]
    return spec, _executor_of(pipeline, spec["componentRef"]["name"])


def _branch_of_condition(pipeline: dict, condition: str) -> str:
    """Name of the condition component triggered by exactly ``condition``."""
    for comp in pipeline["components"].values():
        for task in comp.get("dag", {}).get("tasks", {}).values():
            if task.get("triggerPolicy", {}).get("condition") == condition:
                return task["componentRef"]["name"]
    raise AssertionError(f"no condition {condition!r}")


def test_distillation_requests_gpus_per_node_gpus_or_waits_on_a_cpu_node(ir):
    """issue 14: one node holds gpus_per_node V100s; a PaddleJob's waiting step holds none."""
    pipeline, k8s = ir
    executors = pipeline["deploymentSpec"]["executors"]
    nodes = "int(inputs.parameter_values['pipelinechannel--distill_nodes'])"
    one_node = _branch_of_condition(pipeline, f"!({nodes} > 1)")
    many = _branch_of_condition(pipeline, f"{nodes} > 1")
    task, e = _task_and_executor(pipeline, one_node, "distill-2")
    container = executors[e]["container"]
    assert container["resources"]["accelerator"]["resourceCount"] == GPUS_PER_NODE
    assert container["image"] == GPU_TRAIN_IMAGE
    assert k8s[e]["nodeSelector"]["labels"] == V100_POOL.node_selector
    params = task["inputs"]["parameters"]
    assert params["nodes"]["runtimeValue"]["constant"] == 1
    assert params["gpus_per_node"]["componentInputParameter"] == "pipelinechannel--gpus_per_node"

    from ppminilm.cluster.jobs import POD_FIELD_PATHS

    task, e = _task_and_executor(pipeline, many, "distill")
    container = executors[e]["container"]
    assert container["image"] == CPU_IMAGE and "accelerator" not in container.get("resources", {})
    assert "nodeSelector" not in k8s[e] and "tolerations" not in k8s[e]
    env = {f["name"]: f["fieldPath"] for f in k8s[e]["fieldPathAsEnv"]}
    assert env == POD_FIELD_PATHS
    assert task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_uuid}}"
    )
    assert task["retryPolicy"]["maxRetryCount"] >= 1
    assert k8s[e]["secretAsEnv"][0]["secretName"] == S3_SECRET_NAME
    # issue 13: the waiting step is sized as a CPU step that outlives its PaddleJob, and tells
    # the job which GPU training image this package was compiled with.
    from ppminilm.cluster.jobs import WAIT_MARGIN_S, WORKER_IMAGE_ENV
    from ppminilm.cluster.paddlejob import PaddleJobSpec
    from ppminilm.cluster.platform import quantity, task_resources

    row = task_resources("paddlejob-distill", gpu=True)
    res = container["resources"]
    assert quantity(res["resourceCpuLimit"]) == quantity(row.cpu_limit)
    assert quantity(res["resourceMemoryLimit"]) == quantity(row.memory_limit)
    assert int(k8s[e]["activeDeadlineSeconds"]) == row.timeout_s
    assert row.timeout_s > PaddleJobSpec.active_deadline_s + WAIT_MARGIN_S
    assert task["retryPolicy"]["maxRetryCount"] == row.retries
    assert {v["name"]: v["value"] for v in container["env"]} == {WORKER_IMAGE_ENV: GPU_TRAIN_IMAGE}


def _in_widths_loop(pipeline: dict, branch: str, stage: str) -> dict:
    """The task of ``stage`` inside the search's widths loop of a branch's recipe."""
    recipe = pipeline["components"][f"comp-task-recipe-{branch}"]["dag"]["tasks"]
    loop = next(t for t in recipe.values() if t["taskInfo"]["name"] == "widths")
    body = pipeline["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    return next(t for k, t in body.items() if re.sub(r"(-\d+)+$", "", k) == stage)


def test_gpu_branch_scores_int8_candidates_on_the_t4_pool(ir):
    pipeline, _ = ir
    gpu = _in_widths_loop(pipeline, "gpu", "quantize")
    cpu = _in_widths_loop(pipeline, "cpu", "quantize")
    assert gpu["inputs"]["parameters"]["device"]["runtimeValue"]["constant"] == "gpu"
    assert cpu["inputs"]["parameters"]["device"]["runtimeValue"]["constant"] == "cpu"


def test_only_the_report_skips_the_step_cache(ir):
    """A re-run of unchanged inputs reuses every step but writes its own report."""
    pipeline, _ = ir
    uncached = sorted(
        key
        for key, spec in _tasks(pipeline)
        if not spec["componentRef"]["name"].startswith(("comp-condition", "comp-for-loop"))
        and not spec.get("cachingOptions", {}).get("enableCache")
    )
    assert uncached == ["report", "report-2"]
