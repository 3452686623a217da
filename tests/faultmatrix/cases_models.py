"""Fault cases of saved models, inference models, checkpoints, outputs and result files."""

from __future__ import annotations

import json
from pathlib import Path

from faultmatrix.common import USER, _finetune, _write
from faultmatrix.fixtures import Fixtures
from faultmatrix.runner import Call, case
from ppminilm.contracts import WEIGHTS_FILE


def _init(fx: Fixtures, root: Path, model: Path, *extra: str) -> list[str]:
    argv = _finetune(fx, root, *extra)
    argv[argv.index("--init") + 1] = str(model)
    return argv


def _model_case(fx: Fixtures, root: Path, name: str, data: str | bytes, names: list[str]) -> Call:
    model = fx.copy("classifier", root / "model")
    _write(model / name, data)
    return Call(_init(fx, root, model), [str(model / name), *names], USER)


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- saved models


@case("model")
def init_model_missing(fx: Fixtures, root: Path) -> Call:
    missing = root / "no-model"
    return Call(_init(fx, root, missing), [str(missing)], USER)


@case("model")
def init_model_without_config(fx: Fixtures, root: Path) -> Call:
    # Without model_config.json an unpruned model is still a PaddleNLP directory (config.json):
    # take both away.
    model = fx.copy("classifier", root / "model")
    (model / "model_config.json").unlink()
    (model / "config.json").unlink()
    return Call(_init(fx, root, model), [str(model), "model_config.json"], USER)


@case("model")
def init_model_paddlenlp_config_without_weights(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("classifier", root / "model")
    (model / "model_config.json").unlink()
    (model / WEIGHTS_FILE).unlink()
    return Call(_init(fx, root, model), [str(model), WEIGHTS_FILE], USER)


@case("model")
def model_config_bad_json(fx: Fixtures, root: Path) -> Call:
    call = _model_case(fx, root, "model_config.json", '{"arch": {,}}', [])
    call.names = [f"{root / 'model' / 'model_config.json'}:1:"]
    return call


@case("model")
def model_config_wrong_type(fx: Fixtures, root: Path) -> Call:
    config = _json(fx.get("classifier") / "model_config.json")
    config["arch"]["num_layers"] = "two"
    return _model_case(fx, root, "model_config.json", json.dumps(config), ["num_layers"])


@case("model")
def model_config_unknown_kind(fx: Fixtures, root: Path) -> Call:
    config = _json(fx.get("classifier") / "model_config.json")
    config["kind"] = "regressor"
    return _model_case(fx, root, "model_config.json", json.dumps(config), ["kind"])


@case("model")
def weights_zero_bytes(fx: Fixtures, root: Path) -> Call:
    return _model_case(fx, root, WEIGHTS_FILE, b"", [])


@case("model")
def weights_damaged(fx: Fixtures, root: Path) -> Call:
    data = (fx.get("classifier") / WEIGHTS_FILE).read_bytes()
    return _model_case(fx, root, WEIGHTS_FILE, data[: len(data) // 2], [])


@case("model")
def weights_wrong_shape(fx: Fixtures, root: Path) -> Call:
    config = _json(fx.get("classifier") / "model_config.json")
    config["arch"]["intermediate_size"] = 96
    call = _model_case(fx, root, "model_config.json", json.dumps(config), [])
    call.names = [str(root / "model" / WEIGHTS_FILE), "shape"]
    return call


@case("model")
def tokenizer_larger_than_embedding(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("classifier", root / "model")
    vocab = (model / "vocab.txt").read_text(encoding="utf-8")
    (model / "vocab.txt").write_text(vocab + "".join(f"词{i}\n" for i in range(50)), "utf-8")
    argv = _init(fx, root, model)
    del argv[argv.index("--tokenizer-dir") : argv.index("--tokenizer-dir") + 2]
    return Call(argv, [str(model), "vocab_size"], USER)


@case("model")
def export_checkpoint_without_head(fx: Fixtures, root: Path) -> Call:
    from safetensors.numpy import load_file, save_file

    model = fx.copy("classifier", root / "model")
    state = load_file(str(model / WEIGHTS_FILE))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("classifier")},
        str(model / WEIGHTS_FILE),
    )
    argv = [
        "export",
        "--model-dir",
        str(model),
        "--out",
        str(root / "infer"),
        "--max-seq-len",
        "16",
    ]
    return Call(argv, [str(model / WEIGHTS_FILE), "classifier"], USER)


@case("model")
def export_an_encoder(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("teacher", root / "teacher")
    argv = [
        "export",
        "--model-dir",
        str(model),
        "--out",
        str(root / "infer"),
        "--max-seq-len",
        "16",
    ]
    return Call(argv, [str(model), "classifier"], USER)


@case("model")
def prune_an_encoder(fx: Fixtures, root: Path) -> Call:
    argv = [
        "prune", "--task-dir", str(fx.copy("task", root / "task")),
        "--model-dir", str(fx.copy("teacher", root / "teacher")), "--out", str(root / "pruned"),
    ]  # fmt: skip
    return Call(argv, [str(root / "teacher"), "classifier"], USER)


# --------------------------------------------------------------------------- inference models


def _predict(model: Path) -> list[str]:
    return ["infer", "predict", "--model-dir", str(model), "这个东西很好用"]


def _inference_case(
    fx: Fixtures, root: Path, name: str, data: str | bytes, names: list[str]
) -> Call:
    model = fx.copy("inference", root / "inference")
    _write(model / name, data)
    return Call(_predict(model), [str(model / name), *names], USER)


@case("inference")
def pdiparams_damaged(fx: Fixtures, root: Path) -> Call:
    data = (fx.get("inference") / "inference.pdiparams").read_bytes()
    return _inference_case(fx, root, "inference.pdiparams", data[: len(data) // 3], [])


@case("inference")
def pdiparams_zero_bytes(fx: Fixtures, root: Path) -> Call:
    return _inference_case(fx, root, "inference.pdiparams", b"", [])


@case("inference")
def pdmodel_zero_bytes(fx: Fixtures, root: Path) -> Call:
    return _inference_case(fx, root, "inference.pdmodel", b"", [])


@case("inference")
def pdmodel_garbage(fx: Fixtures, root: Path) -> Call:
    return _inference_case(fx, root, "inference.pdmodel", b"\x00\x01 not a program" * 40, [])


@case("inference")
def serving_config_missing(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("inference", root / "inference")
    (model / "serving.json").unlink()
    return Call(_predict(model), [str(model), "serving.json"], USER)


@case("inference")
def serving_config_wrong_type(fx: Fixtures, root: Path) -> Call:
    serving = _json(fx.get("inference") / "serving.json")
    serving["max_seq_len"] = "16"
    return _inference_case(fx, root, "serving.json", json.dumps(serving), ["max_seq_len"])


@case("inference")
def serving_config_bad_json(fx: Fixtures, root: Path) -> Call:
    call = _inference_case(fx, root, "serving.json", '{"max_seq_len": 16,\n}', [])
    call.names = [f"{root / 'inference' / 'serving.json'}:2:"]
    return call


@case("inference")
def quantize_a_dynamic_model(fx: Fixtures, root: Path) -> Call:
    argv = [
        "quantize", "--task-dir", str(fx.copy("task", root / "task")),
        "--model-dir", str(fx.copy("classifier", root / "model")), "--out", str(root / "int8"),
    ]  # fmt: skip
    return Call(argv, [str(root / "model"), "inference.pdmodel"], USER)


@case("inference")
def bench_longer_than_exported(fx: Fixtures, root: Path) -> Call:
    argv = [
        "infer", "bench", "--model-dir", str(fx.copy("inference", root / "inference")),
        "--task-dir", str(fx.copy("task", root / "task")), "--out-dir", str(root / "bench"),
        "--max-seq-len", "999",
    ]  # fmt: skip
    return Call(argv, ["max_seq_len"], USER)


# --------------------------------------------------------------------------- outputs


@case("output")
def finetune_out_holds_user_files(fx: Fixtures, root: Path) -> Call:
    argv = _finetune(fx, root)
    _write(root / "out" / "thesis.tex", "my thesis")
    return Call(argv, [str(root / "out")], USER)


@case("output")
def finetune_out_is_a_file(fx: Fixtures, root: Path) -> Call:
    argv = _finetune(fx, root)
    _write(root / "out", "a file")
    return Call(argv, [str(root / "out")], USER)


@case("output")
def export_into_foreign_dir(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("classifier", root / "model")
    _write(root / "infer" / "results.csv", "a,b\n1,2\n")
    argv = [
        "export",
        "--model-dir",
        str(model),
        "--out",
        str(root / "infer"),
        "--max-seq-len",
        "16",
    ]
    return Call(argv, [str(root / "infer")], USER)


@case("output")
def export_over_another_artifact(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("classifier", root / "model")
    other = fx.copy("teacher", root / "teacher")
    argv = ["export", "--model-dir", str(model), "--out", str(other), "--max-seq-len", "16"]
    return Call(argv, [str(other)], USER)


@case("output")
def summary_path_under_a_file(fx: Fixtures, root: Path) -> Call:
    blocker = _write(root / "blocker", "a file")
    model = fx.copy("classifier", root / "model")
    argv = [
        "export", "--model-dir", str(model), "--out", str(root / "infer"), "--max-seq-len", "16",
        "--summary", str(blocker / "summary.json"),
    ]  # fmt: skip
    return Call(argv, [str(blocker)], USER)


@case("output")
def grid_out_is_a_file(fx: Fixtures, root: Path) -> Call:
    argv = _finetune(fx, root)
    argv[0] = "grid"
    _write(root / "out", "a file")
    return Call(argv, [str(root / "out")], USER)


# --------------------------------------------------------------------------- result files


@case("results")
def select_best_missing_grid(fx: Fixtures, root: Path) -> Call:
    missing = root / "grid.json"
    return Call(["select-best", str(missing)], [str(missing)], USER)


@case("results")
def select_best_bad_json(fx: Fixtures, root: Path) -> Call:
    grid = _write(root / "grid" / "grid.json", '{"results": [\n  {"point": }]}')
    return Call(["select-best", str(grid)], [f"{grid}:2:"], USER)


@case("results")
def report_summary_bad_json(fx: Fixtures, root: Path) -> Call:
    summary = _write(root / "run_summary.json", '{"stages": [}')
    argv = ["report", "--summary", str(summary), "--out-dir", str(root / "report")]
    return Call(argv, [f"{summary}:1:"], USER)


@case("results")
def report_summary_missing(fx: Fixtures, root: Path) -> Call:
    summary = root / "run_summary.json"
    argv = ["report", "--summary", str(summary), "--out-dir", str(root / "report")]
    return Call(argv, [str(summary)], USER)


@case("inference")
def predict_with_a_task_dir(fx: Fixtures, root: Path) -> Call:
    task = fx.copy("task", root / "task")
    return Call(_predict(task), [str(task), "inference.pdmodel"], USER)


@case("inference")
def export_zero_sequence_length(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("classifier", root / "model")
    argv = ["export", "--model-dir", str(model), "--out", str(root / "infer"), "--max-seq-len", "0"]
    return Call(argv, ["max_seq_len"], USER)


@case("config")
def quantize_zero_batch_nums(fx: Fixtures, root: Path) -> Call:
    argv = [
        "quantize", "--task-dir", str(fx.copy("task", root / "task")),
        "--model-dir", str(fx.copy("inference", root / "inference")),
        "--out", str(root / "int8"), "--batch-nums", "0",
    ]  # fmt: skip
    return Call(argv, ["batch_nums"], USER)


@case("data")
def validate_a_model_dir(fx: Fixtures, root: Path) -> Call:
    model = fx.copy("classifier", root / "model")
    return Call(["data", "validate", str(model)], [str(model / "task.json")], USER)


@case("results")
def select_best_grid_names_missing_models(fx: Fixtures, root: Path) -> Call:
    grid = root / "grid"
    point = {"point": {"batch_size": 16, "learning_rate": 0.001}, "model_dir": str(grid / "gone")}
    _write(grid / "grid.json", json.dumps({"task": "local_reviews", "results": [point]}))
    return Call(["select-best", str(grid / "grid.json")], [str(grid / "grid.json")], USER)
