"""Compile the pipeline and every component to IR YAML (``make compile``).

Writes two pipeline packages and ``components/compiled/<component>.yaml``:

* ``ppminilm.yaml`` -- defaults of the local profile (what ``make run`` runs);
* ``ppminilm-cluster.yaml`` -- the same pipeline whose defaults are the seed recipe on the GPU
  pools (seven CLUE tasks, the seed grid, the search's widths 0.75 and 0.5 within 1 point,
  ``use_gpu``, ``data_source=clue``), for people who
  upload it in the Kubeflow UI and only fill in the object-store URIs.

Image references are resolved here, at compile time: ``IMAGE_REGISTRY`` / ``IMAGE_TAG`` and,
optionally, ``IMAGE_DIGESTS`` (``cpu=sha256:...,gpu-train=sha256:...``) or the matching flags.
Packages with other than the default images go to ``build/compiled/`` (git-ignored) so the
committed golden files stay the default build: ``tests/pipelines/test_compile.py`` fails when
those are stale, and this script is the one command that regenerates them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPILED_DIR = ROOT / "pipelines" / "compiled"
#: Where packages with non-default images go (``make compile IMAGE_REGISTRY=...``).
BUILD_DIR = ROOT / "build" / "compiled"
PIPELINE_YAML = COMPILED_DIR / "ppminilm.yaml"
CLUSTER_YAML_NAME = "ppminilm-cluster.yaml"
CLUSTER_YAML = COMPILED_DIR / CLUSTER_YAML_NAME
COMPONENTS_DIR = ROOT / "components" / "compiled"


def cluster_defaults() -> dict[str, Any]:
    """Pipeline parameter defaults of the cluster package: the seed recipe on the GPU pools."""
    from ppminilm.config import CLUE_TASKS, GridConfig, PruneConfig, SearchConfig, config_for

    return {
        "profile": "cluster",
        "tasks": list(CLUE_TASKS),
        "grid": GridConfig().points(),
        "widths": list(config_for(PruneConfig, "cluster").width_mult_list),
        "accuracy_budget": config_for(SearchConfig, "cluster").accuracy_budget,
        "use_gpu": True,
        "data_source": "clue",
    }


def all_components() -> dict[str, object]:
    """Every reusable component by its file name (without ``.yaml``)."""
    from components.benchmark import benchmark
    from components.data import build_data
    from components.distill import distill
    from components.finetune import finetune
    from components.paddlejob_distill import paddlejob_distill
    from components.prune import prune, take_width
    from components.quantize import quantize
    from components.report import record_status, report
    from components.search import check_search, select_candidate
    from components.select_best import select_best
    from components.teacher import pretrain_teacher
    from components.timing import time_rows

    comps = [
        check_search,
        build_data,
        pretrain_teacher,
        distill,
        paddlejob_distill,
        finetune,
        select_best,
        prune,
        take_width,
        quantize,
        benchmark,
        time_rows,
        select_candidate,
        report,
        record_status,
    ]
    return {c.name.replace("-", "_"): c for c in comps}  # type: ignore[attr-defined]


def parse_digests(text: str) -> dict[str, str]:
    """``"cpu=sha256:...,gpu-train=sha256:..."`` -> ``{"cpu": "sha256:...", ...}``.

    Raises:
        ValueError: On an entry without ``=``.
    """
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, digest = item.partition("=")
        if not sep:
            raise ValueError(f"IMAGE_DIGESTS entry {item!r}: expected name=sha256:<hex>")
        out[name.strip()] = digest.strip()
    return out


def image_mapping(
    registry: str = "", tag: str = "", digests: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The image each component was declared with -> the reference to compile in."""
    from ppminilm.cluster import platform

    wanted = platform.image_refs(registry, tag, digests)
    return {platform.IMAGES[name]: ref for name, ref in wanted.items()}


def retarget_images(path: Path, mapping: Mapping[str, str]) -> None:
    """Rewrite every executor image of a compiled package through ``mapping``.

    Env values that are one of the project's images go through ``mapping`` too: the PaddleJob
    step tells its workers their image that way (``ppminilm.cluster.jobs.WORKER_IMAGE_ENV``).

    Raises:
        ValueError: If an executor uses an image that is not one of the project's.
    """
    docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    for name, executor in docs[0].get("deploymentSpec", {}).get("executors", {}).items():
        container = executor.get("container", {})
        image = container.get("image")
        if image not in mapping:
            raise ValueError(f"{path.name}: executor {name} uses image {image!r}, not ours")
        container["image"] = mapping[image]
        for var in container.get("env", []):
            if var.get("value") in mapping:
                var["value"] = mapping[var["value"]]
    text = yaml.safe_dump_all(docs, sort_keys=True) if len(docs) > 1 else yaml.safe_dump(docs[0])
    path.write_text(text, encoding="utf-8")


def compile_all(
    pipeline_yaml: Path = PIPELINE_YAML,
    components_dir: Path = COMPONENTS_DIR,
    *,
    registry: str = "",
    tag: str = "",
    digests: Mapping[str, str] | None = None,
) -> list[Path]:
    """Compile both pipeline packages and the components; returns the written paths.

    The cluster package is written beside ``pipeline_yaml`` as ``ppminilm-cluster.yaml``.
    """
    from kfp import compiler

    from pipelines.ppminilm import ppminilm_pipeline

    mapping = image_mapping(registry, tag, digests)
    retarget = any(old != new for old, new in mapping.items())
    pipeline_yaml.parent.mkdir(parents=True, exist_ok=True)
    components_dir.mkdir(parents=True, exist_ok=True)
    cluster_yaml = pipeline_yaml.parent / CLUSTER_YAML_NAME
    compiler.Compiler().compile(ppminilm_pipeline, str(pipeline_yaml))
    compiler.Compiler().compile(
        ppminilm_pipeline, str(cluster_yaml), pipeline_parameters=cluster_defaults()
    )
    written = [pipeline_yaml, cluster_yaml]
    for name, comp in all_components().items():
        path = components_dir / f"{name}.yaml"
        compiler.Compiler().compile(comp, str(path))
        written.append(path)
    if retarget:
        for path in written:
            retarget_images(path, mapping)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI entry: compile to the default (or given) locations."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-registry", default=env.get("IMAGE_REGISTRY", ""))
    parser.add_argument("--image-tag", default=env.get("IMAGE_TAG", ""))
    parser.add_argument(
        "--image-digests",
        default=env.get("IMAGE_DIGESTS", ""),
        help="pin images by digest: cpu=sha256:...,gpu-train=sha256:...,gpu-infer=sha256:...",
    )
    parser.add_argument("--out-dir", type=Path, default=None, help="where the packages go")
    args = parser.parse_args(argv)
    try:
        digests = parse_digests(args.image_digests)
        mapping = image_mapping(args.image_registry, args.image_tag, digests)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    custom = any(old != new for old, new in mapping.items())
    out = args.out_dir or (BUILD_DIR if custom else COMPILED_DIR)
    components = COMPONENTS_DIR if out == COMPILED_DIR else out / "components"
    written = compile_all(
        out / PIPELINE_YAML.name,
        components,
        registry=args.image_registry,
        tag=args.image_tag,
        digests=digests,
    )
    for path in written:
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    for image in sorted(set(mapping.values())):
        print(f"image {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
