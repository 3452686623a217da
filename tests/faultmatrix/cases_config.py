"""Fault cases of ``--config`` files and command-line flags."""

from __future__ import annotations

from pathlib import Path

from faultmatrix.common import USER, _finetune, _write
from faultmatrix.fixtures import Fixtures
from faultmatrix.runner import Call, case


def _with_config(fx: Fixtures, root: Path, text: str | bytes, command: str = "finetune") -> Call:
    cfg = _write(root / "config.json", text)
    argv = _finetune(fx, root, "--config", str(cfg))
    if command == "grid":
        argv[0] = "grid"
        argv[argv.index("--out") + 1] = str(root / "grid")
    return Call(argv, [str(cfg)], USER)


# --------------------------------------------------------------------------- --config files


@case("config")
def config_names_a_directory(fx: Fixtures, root: Path) -> Call:
    (root / "conf.d").mkdir()
    return Call(_finetune(fx, root, "--config", str(root / "conf.d")), [str(root / "conf.d")], USER)


@case("config")
def config_missing(fx: Fixtures, root: Path) -> Call:
    missing = root / "nope.json"
    return Call(_finetune(fx, root, "--config", str(missing)), [str(missing)], USER)


@case("config")
def config_bad_json(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"max_steps": 1,\n  "seed": }\n')
    call.names = [f"{root / 'config.json'}:2:"]
    return call


@case("config")
def config_not_utf8(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, b'{"seed": 1,\n "task": "\xff\xfe"}\n')
    call.names = [f"{root / 'config.json'}:2", "UTF-8"]
    return call


@case("config")
def config_nan_learning_rate(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"learning_rate": NaN}')
    call.names = ["learning_rate", "finite"]
    return call


@case("config")
def config_infinite_learning_rate(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"learning_rate": Infinity}')
    call.names = ["learning_rate", "finite"]
    return call


@case("config")
def config_string_for_list(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"grid": {"batch_sizes": "48"}}', command="grid")
    call.names = ["batch_sizes", "list"]
    return call


@case("config")
def config_float_for_int(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"max_steps": 10.5}')
    call.names = ["max_steps", "integer"]
    return call


@case("config")
def config_bool_for_int(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"batch_size": true}')
    call.names = ["batch_size"]
    return call


@case("config")
def config_unknown_field(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"learnig_rate": 0.001}')
    call.names.append("learnig_rate")
    return call


@case("config")
def config_unknown_stage_key(fx: Fixtures, root: Path) -> Call:
    call = _with_config(fx, root, '{"finetune": {"seed": 3}, "finetuen": {"seed": 4}}')
    call.names.append("finetuen")
    return call


@case("config")
def config_top_level_list(fx: Fixtures, root: Path) -> Call:
    return _with_config(fx, root, "[1, 2]")


@case("config")
def config_nested_arch_wrong_type(fx: Fixtures, root: Path) -> Call:
    argv_cfg = _write(root / "config.json", '{"distill": {"student": {"num_layers": "six"}}}')
    call = Call(_finetune(fx, root, "--config", str(argv_cfg)), ["num_layers"], USER)
    return call


# --------------------------------------------------------------------------- flags


@case("config")
def flag_nan_learning_rate(fx: Fixtures, root: Path) -> Call:
    return Call(_finetune(fx, root, "--learning-rate", "nan"), ["learning_rate"], USER)


@case("config")
def flag_infinite_learning_rate(fx: Fixtures, root: Path) -> Call:
    return Call(_finetune(fx, root, "--learning-rate", "inf"), ["learning_rate"], USER)


@case("config")
def flag_zero_batch_size(fx: Fixtures, root: Path) -> Call:
    return Call(_finetune(fx, root, "--batch-size", "0"), ["batch_size"], USER)


@case("config")
def flag_sequence_too_short(fx: Fixtures, root: Path) -> Call:
    argv = _finetune(fx, root)
    argv[argv.index("--max-seq-len") + 1] = "2"
    return Call(argv, ["max_seq_len"], USER)


@case("config")
def flag_negative_grid_learning_rate(fx: Fixtures, root: Path) -> Call:
    argv = _finetune(fx, root, "--learning-rates", "-0.001")
    argv[0] = "grid"
    return Call(argv, ["learning_rates"], USER)


@case("config")
def flag_unknown_profile(fx: Fixtures, root: Path) -> Call:
    return Call(_finetune(fx, root, "--profile", "laptop"), ["--profile", "laptop"], USER)


@case("config")
def distill_alpha_beta_over_one(fx: Fixtures, root: Path) -> Call:
    argv = [
        "distill", "--corpus", str(fx.copy("corpus", root / "corpus")),
        "--teacher", str(fx.copy("teacher", root / "teacher")), "--out", str(root / "student"),
        "--config", str(fx.get("distill-config")), "--alpha", "0.8", "--beta", "0.5",
    ]  # fmt: skip
    return Call(argv, ["alpha", "beta"], USER)


@case("config")
def distill_relation_heads_do_not_divide(fx: Fixtures, root: Path) -> Call:
    argv = [
        "distill", "--corpus", str(fx.copy("corpus", root / "corpus")),
        "--teacher", str(fx.copy("teacher", root / "teacher")), "--out", str(root / "student"),
        "--config", str(fx.get("distill-config")), "--num-relation-heads", "5",
    ]  # fmt: skip
    return Call(argv, ["num_relation_heads"], USER)


@case("config")
def quantize_unknown_algo(fx: Fixtures, root: Path) -> Call:
    argv = [
        "quantize", "--task-dir", str(fx.copy("task", root / "task")),
        "--model-dir", str(fx.copy("inference", root / "inference")),
        "--out", str(root / "int8"), "--algos", "fastest",
    ]  # fmt: skip
    return Call(argv, ["algos", "fastest"], USER)


@case("config")
def prune_width_above_one(fx: Fixtures, root: Path) -> Call:
    argv = [
        "prune", "--task-dir", str(fx.copy("task", root / "task")),
        "--model-dir", str(fx.copy("classifier", root / "model")),
        "--out", str(root / "pruned"), "--widths", "1.5",
    ]  # fmt: skip
    return Call(argv, ["width_mult_list"], USER)


@case("config")
def build_local_sizes_too_large(fx: Fixtures, root: Path) -> Call:
    cfg = _write(root / "config.json", '{"reviews_train": 10000000}')
    argv = ["data", "build-local", "--out", str(root / "data"), "--config", str(cfg)]
    return Call(argv, ["reviews_"], USER)


@case("config")
def build_local_zero_shards(fx: Fixtures, root: Path) -> Call:
    cfg = _write(root / "config.json", '{"num_shards": 0}')
    argv = ["data", "build-local", "--out", str(root / "data"), "--config", str(cfg)]
    return Call(argv, ["num_shards"], USER)
