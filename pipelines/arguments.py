"""Run arguments checked against a compiled package before anything is sent to a server.

:func:`check_arguments` compares the arguments with the package's root
``inputDefinitions`` (unknown key, wrong type, missing required value) and then with what the
recipe accepts (profile, task names, grid points, stage overrides, object-store URIs), and
raises one :class:`~ppminilm.errors.ConfigError` naming the first bad key. The search's
``widths`` must each keep a whole number of the student's attention heads.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ppminilm.errors import ConfigError

#: IR parameter types and the Python types a JSON argument of that type may have.
_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}
#: Parameters that name object-store locations: on a cluster only ``s3://``/``minio://`` work.
URI_PARAMETERS = ("teacher_uri", "student_uri", "corpus_uri", "vocab_uri", "checkpoint_uri")
GRID_KEYS = ("batch_size", "learning_rate")
DATA_SOURCES = ("local", "clue")


def load_package(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec of a compiled package and its root input definitions.

    Raises:
        ConfigError: If the file is missing or is not a compiled KFP pipeline.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: compiled pipeline not found (run `make compile`)")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from None
    spec = docs[0] if docs else {}
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters")
    if not isinstance(spec.get("pipelineInfo"), dict) or not isinstance(params, dict):
        raise ConfigError(f"{path}: not a compiled KFP pipeline (no pipelineInfo / root inputs)")
    return spec, params


def package_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """Default value of every root parameter that has one."""
    return {name: p["defaultValue"] for name, p in params.items() if "defaultValue" in p}


def _type_ok(value: Any, kind: str) -> bool:
    allowed = _TYPES.get(kind)
    if allowed is None:
        return True
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def check_types(arguments: Mapping[str, Any], params: Mapping[str, Any], where: str) -> None:
    """Unknown keys, mistyped values and missing required parameters.

    Raises:
        ConfigError: Naming the key (with a close match for a misspelling).
    """
    for key, value in arguments.items():
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}: unknown pipeline parameter {key!r}{hint}; "
                f"the package takes {sorted(params)}"
            )
        kind = params[key].get("parameterType", "")
        if not _type_ok(value, kind):
            raise ConfigError(
                f"{where}: parameter {key!r}={value!r} is a {type(value).__name__}, "
                f"the pipeline expects {kind}"
            )
    for key, spec in params.items():
        if key not in arguments and "defaultValue" not in spec and not spec.get("isOptional"):
            raise ConfigError(f"{where}: required pipeline parameter {key!r} is missing")


def check_recipe(arguments: Mapping[str, Any], where: str) -> None:
    """What the recipe accepts: profile, tasks, grid points, overrides, source, URIs.

    ``arguments`` must be the complete set (package defaults merged in).

    Raises:
        ConfigError: Naming the key and what was expected.
    """
    from ppminilm.config import ALL_TASKS, PROFILES, split_overrides, stage_config

    profile = arguments.get("profile", "local")
    if profile not in PROFILES:
        raise ConfigError(f"{where}: profile={profile!r}; expected one of {sorted(PROFILES)}")
    tasks = arguments.get("tasks", [])
    bad = [t for t in tasks if not isinstance(t, str) or t.lower() not in ALL_TASKS]
    if bad or not tasks:
        raise ConfigError(
            f"{where}: tasks={tasks!r}: expected a non-empty list of {sorted(ALL_TASKS)}"
        )
    for i, point in enumerate(arguments.get("grid", [])):
        if not isinstance(point, dict) or sorted(point) != sorted(GRID_KEYS):
            raise ConfigError(f"{where}: grid[{i}]={point!r}: expected keys {list(GRID_KEYS)}")
        size, rate = point["batch_size"], point["learning_rate"]
        # JSON defaults in the IR are doubles (16.0): an integral number is an int here.
        integral = isinstance(size, int) or (isinstance(size, float) and size.is_integer())
        if isinstance(size, bool) or not integral or size <= 0:
            raise ConfigError(f"{where}: grid[{i}].batch_size={size!r}: expected an int > 0")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise ConfigError(f"{where}: grid[{i}].learning_rate={rate!r}: expected a number > 0")
    if not arguments.get("grid"):
        raise ConfigError(f"{where}: grid is empty: expected at least one grid point")
    overrides = split_overrides(arguments.get("overrides") or {}, where=f"{where}: overrides")
    for stage, fields in overrides.items():
        try:
            stage_config(stage, profile, fields)
        except ValueError as exc:
            raise ConfigError(f"{where}: overrides[{stage!r}]: {exc}") from None
    check_search_arguments(arguments, overrides, where)
    source = arguments.get("data_source", "local")
    if source not in DATA_SOURCES:
        raise ConfigError(f"{where}: data_source={source!r}; expected one of {list(DATA_SOURCES)}")
    for key in URI_PARAMETERS:
        uri = arguments.get(key, "")
        if uri and not uri.startswith(("s3://", "minio://")):
            raise ConfigError(
                f"{where}: {key}={uri!r}: on a cluster only object-store URIs (s3://bucket/...) "
                "reach the pods"
            )
    if source == "clue":
        for key in ("corpus_uri", "vocab_uri"):
            if not arguments.get(key):
                raise ConfigError(f"{where}: data_source='clue' needs {key} (an s3:// prefix)")


def check_search_arguments(
    arguments: Mapping[str, Any], overrides: Mapping[str, Any], where: str
) -> None:
    """The compression search's ``widths`` (whole heads of the student) and ``accuracy_budget``.

    Raises:
        ConfigError: Naming the parameter and the widths or values allowed.
    """
    from ppminilm.runner.search import validate_search

    widths = arguments.get("widths")
    if widths is None:
        return
    if not isinstance(widths, list):
        raise ConfigError(f"{where}: widths={widths!r}: expected a list of widths in (0, 1]")
    budget = arguments.get("accuracy_budget")
    try:
        validate_search(
            widths,
            budget,
            do_distill=bool(arguments.get("do_distill", True)),
            profile=arguments.get("profile", "local"),
            overrides=overrides,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_arguments(
    arguments: Mapping[str, Any], params: Mapping[str, Any], where: str = "arguments"
) -> dict[str, Any]:
    """Check run arguments against a package and the recipe.

    Args:
        arguments: What will be sent (only the keys given; defaults come from the package).
        params: The package's root ``inputDefinitions.parameters``.
        where: Where the arguments came from, for messages.

    Returns:
        The complete arguments (package defaults, then ``arguments``).

    Raises:
        ConfigError: Naming the first bad key.
    """
    check_types(arguments, params, where)
    complete = {**package_defaults(params), **arguments}
    check_recipe(complete, where)
    return complete
