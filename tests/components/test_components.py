"""Components: thin typed interfaces, compiled YAML reusable from another pipeline."""

import ast
from pathlib import Path

import pytest
from kfp import compiler, components, dsl

from pipelines.compile import COMPONENTS_DIR, all_components
from ppminilm.cluster.platform import CPU_IMAGE

ROOT = Path(__file__).resolve().parents[2]
#: Most statements a component body may have (imports + one call): the work lives in src/.
MAX_BODY_STATEMENTS = 3


@pytest.mark.parametrize("name", sorted(all_components()))
def test_component_is_thin_and_documented(name):
    comp = all_components()[name]
    func = comp.python_func
    assert func.__doc__ and "Args:" in func.__doc__, f"{name}: docstring with Args"
    tree = ast.parse(Path(func.__code__.co_filename).read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func.__name__)
    body = [
        s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    assert len(body) <= MAX_BODY_STATEMENTS, f"{name}: body does work, move it to src/"
    assert all(not isinstance(s, ast.For | ast.While) for s in body)
    imports = [s for s in body if isinstance(s, ast.ImportFrom | ast.Import)]
    assert all(getattr(s, "module", "").startswith("ppminilm") for s in imports), name


@pytest.mark.parametrize("name", sorted(all_components()))
def test_component_image_and_no_pip(name):
    spec = all_components()[name].component_spec
    container = spec.implementation.container
    assert container.image == CPU_IMAGE
    assert "pip install" not in " ".join(container.command + (container.args or []))


def test_compiled_components_load_into_another_pipeline(tmp_path):
    loaded = {
        p.stem: components.load_component_from_file(str(p))
        for p in sorted(COMPONENTS_DIR.glob("*.yaml"))
    }
    assert set(loaded) == set(all_components())

    @dsl.pipeline(name="reuse-finetune-and-benchmark")
    def reuse(task: str = "tnews"):
        data = loaded["build_data"](
            profile="cluster",
            tasks=[task],
            source="clue",
            corpus_uri="s3://b/corpus",
            vocab_uri="s3://b/vocab",
        )
        imported = dsl.importer(
            artifact_uri="s3://b/models/ppminilm-6l-768h", artifact_class=dsl.Model, reimport=False
        )
        ft = loaded["finetune"](
            data=data.outputs["data"],
            init_model=imported.output,
            task=task,
            batch_size=32,
            learning_rate=5e-5,
            profile="cluster",
        )
        loaded["benchmark"](
            data=data.outputs["data"],
            model=ft.outputs["model"],
            task=task,
            name="reused",
            profile="cluster",
        )

    out = tmp_path / "reuse.yaml"
    compiler.Compiler().compile(reuse, str(out))
    text = out.read_text(encoding="utf-8")
    assert "comp-finetune" in text and "comp-benchmark" in text and CPU_IMAGE in text
    # typed interfaces survive the round trip
    ft_spec = loaded["finetune"].component_spec
    assert ft_spec.inputs["init_model"].type.startswith("system.Model")
    assert ft_spec.outputs["metrics"].type.startswith("system.Metrics")
