"""KFP component: the InferenceService of the benchmark's chosen model (KServe)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from ppminilm.cluster.platform import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def serve(
    model: Input[Model],
    inference_service: Output[Artifact],
    notes: Output[Markdown],
    task: str,
    profile: str = "local",
    pool: str = "cpu",
    run_id: str = "",
    overrides: dict = {},  # noqa: B006
):
    """Write the KServe InferenceService that serves the model, and how to deploy and call it.

    The predictor runs `ppminilm serve` from the ServingRuntime of the pool (manifests/serving/),
    with storageUri the model's place in object storage, the ppminilm-serving service account
    (its Secret holds the object-store credentials), guaranteed resources, min/max replicas and
    the batching settings of the serve config. Apply it with `make deploy-model RUN=...`.

    Args:
        model: The deployable model (the INT8 benchmark's `deployable`: serving.json names
            its engine).
        inference_service: Output: the InferenceService YAML.
        notes: Output: what is served, how to deploy it, how callers authenticate.
        task: Task name.
        profile: local or cluster.
        pool: cpu (the CPU image, the engine the benchmark chose) or t4 (TensorRT).
        run_id: The pipeline run (a label; a local run's upload prefix).
        overrides: Stage config overrides, {"serve": {"max_replicas": 4, ...}}.
    """
    from ppminilm.runner import run_step

    run_step(
        "serve",
        artifact=inference_service,
        model=model.path,
        model_uri=model.uri,
        out=inference_service.path,
        notes=notes.path,
        task=task,
        pool=pool,
        run_id=run_id,
        profile=profile,
        overrides=overrides,
    )
