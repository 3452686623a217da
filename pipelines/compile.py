"""Compile the pipeline and every component to IR YAML (``make compile``).

Writes ``pipelines/compiled/ppminilm.yaml`` and ``components/compiled/<component>.yaml``. The
committed files are golden: ``tests/pipelines/test_compile.py`` fails when they are stale, and
this script is the one command that regenerates them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_YAML = ROOT / "pipelines" / "compiled" / "ppminilm.yaml"
COMPONENTS_DIR = ROOT / "components" / "compiled"


def all_components() -> dict[str, object]:
    """Every reusable component by its file name (without ``.yaml``)."""
    from components.benchmark import benchmark
    from components.data import build_data
    from components.distill import distill
    from components.finetune import finetune
    from components.paddlejob_distill import paddlejob_distill
    from components.prune import prune
    from components.quantize import quantize
    from components.report import record_status, report
    from components.results import merge_results
    from components.select_best import select_best
    from components.teacher import pretrain_teacher

    comps = [
        build_data,
        pretrain_teacher,
        distill,
        paddlejob_distill,
        finetune,
        select_best,
        prune,
        quantize,
        benchmark,
        merge_results,
        report,
        record_status,
    ]
    return {c.name.replace("-", "_"): c for c in comps}  # type: ignore[attr-defined]


def compile_all(
    pipeline_yaml: Path = PIPELINE_YAML, components_dir: Path = COMPONENTS_DIR
) -> list[Path]:
    """Compile the pipeline and the components; returns the written paths."""
    from kfp import compiler

    from pipelines.ppminilm import ppminilm_pipeline

    pipeline_yaml.parent.mkdir(parents=True, exist_ok=True)
    components_dir.mkdir(parents=True, exist_ok=True)
    written = [pipeline_yaml]
    compiler.Compiler().compile(ppminilm_pipeline, str(pipeline_yaml))
    for name, comp in all_components().items():
        path = components_dir / f"{name}.yaml"
        compiler.Compiler().compile(comp, str(path))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI entry: compile to the default (or given) locations."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline-yaml", type=Path, default=PIPELINE_YAML)
    parser.add_argument("--components-dir", type=Path, default=COMPONENTS_DIR)
    args = parser.parse_args(argv)
    for path in compile_all(args.pipeline_yaml, args.components_dir):
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
