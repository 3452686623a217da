"""The package's layering, checked from the source (no import, no subprocess).

Layers, lowest first (DESIGN.md): errors -> io -> compat -> config -> contracts ->
data/storage/cluster -> modeling -> training -> inference -> stages -> report/serving -> runner
-> cli. ``serving`` (the model server, above the engines it runs; the runner's ``serve`` step
uses its InferenceService builder) sits beside ``report``: neither imports the other.
A module may import its own package and lower layers only, at module level or inside a
function. ``config``, ``contracts``, ``report``, the paddle-free accounting and the CLI's
start-up never import paddle, paddlenlp or paddleslim at module level, directly or through
anything they import.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "ppminilm"

#: Rank of each top-level part of ``ppminilm`` (a higher rank may import a lower one).
LAYERS = {
    "errors": 0,
    "_lazy": 0,
    "progress": 0,
    "io": 1,
    "compat": 2,
    "config": 3,
    "contracts": 4,
    "data": 5,
    "storage": 5,
    "cluster": 5,
    "modeling": 6,
    "training": 7,
    "inference": 8,
    "stages": 9,
    "report": 10,
    "serving": 10,
    "runner": 11,
    "cli": 12,
    "__main__": 13,
}
PADDLE = ("paddle", "paddlenlp", "paddleslim", "paddle2onnx")
#: Modules that must stay importable without paddle.
PADDLE_FREE = (
    "ppminilm.config",
    "ppminilm.contracts",
    "ppminilm.report",
    "ppminilm.modeling.accounting",
    "ppminilm.storage",
    "ppminilm.cli",
    "ppminilm.cli.model",
    "ppminilm.runner",
    "ppminilm.cluster.platform",
    "ppminilm.serving.deploy",
    "ppminilm.serving.errors",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, top_level_only: bool) -> set[str]:
    """Absolute module names imported by module ``name`` (``from x import y`` counts x.y when
    x.y is a module)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            )
    return found


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_every_part_has_a_layer() -> None:
    parts = {_part(m) for m in MODULES if m != "ppminilm"}
    assert parts <= set(LAYERS), sorted(parts - set(LAYERS))


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "ppminilm"))
def test_no_upward_import(module: str) -> None:
    own = _part(module)
    for imported in _imports(module, top_level_only=False):
        if not imported.startswith("ppminilm.") or imported == "ppminilm":
            continue
        other = _part(imported)
        assert other == own or LAYERS[other] < LAYERS[own], (
            f"{module} (layer {own}={LAYERS[own]}) imports {imported} "
            f"(layer {other}={LAYERS[other]})"
        )


@cache
def _closure(module: str) -> frozenset[str]:
    """Everything importing ``module`` imports at module level (parents' __init__ too)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [
            ".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES
        ]
        if name in MODULES:
            todo += list(_imports(name, top_level_only=True))
    return frozenset(seen)


@pytest.mark.parametrize("module", PADDLE_FREE)
def test_paddle_free_modules(module: str) -> None:
    heavy = sorted(m for m in _closure(module) if m.split(".")[0] in PADDLE)
    assert not heavy, f"importing {module} imports {heavy}"


def test_the_closure_sees_paddle_where_it_is() -> None:
    """The check is not vacuous: a module that does import paddle is caught."""
    assert "paddle" in _closure("ppminilm.modeling.ernie")
    assert "paddle" in _closure("ppminilm.stages.quantize")


def test_no_import_cycle_between_parts() -> None:
    edges = {
        (_part(m), _part(i))
        for m in MODULES
        if m != "ppminilm"
        for i in _imports(m, top_level_only=False)
        if i.startswith("ppminilm.") and _part(i) != _part(m)
    }
    assert not {(a, b) for a, b in edges if (b, a) in edges}
