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
    for stage in V100_STAGES | {"benchmark"}:
        placed = [e for e in by_stage[stage] if e in gpu_execs]
        assert placed, f"{stage} has no GPU variant"
        assert any(e not in gpu_execs for e in by_stage[stage]), f"{stage} has no CPU variant"
        pool, image = (
            (T4_POOL, GPU_INFER_IMAGE) if stage == "benchmark" else (V100_POOL, GPU_TRAIN_IMAGE)
        )
        for e in placed:
            container = executors[e]["container"]
            assert container["image"] == image, e
            assert container["resources"]["accelerator"]["resourceType"] == pool.gpu_resource
            assert int(container["resources"]["accelerator"]["resourceCount"]) >= 1
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
    for name in ("profile", "tasks", "grid", "use_gpu", "do_distill", "overrides"):
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
