"""Tests of the final report: table formatting from exact counts, sections, plots, errors."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from ppminilm.config import ModelArch, bert_base_arch
from ppminilm.modeling.accounting import count_flops, count_params
from ppminilm.report.render import ReportError, build_report, run_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A readable plot is more than a blank canvas but stays small enough to inline.
MIN_PNG_BYTES = 5_000
MAX_PNG_BYTES = 400_000
TASKS = ["afqmc", "tnews"]


def _row(
    name: str, arch: ModelArch, total_s: float, accs: tuple[float, float], precision: str = "fp32"
) -> dict[str, Any]:
    return {
        "name": name,
        "arch": arch.to_dict(),
        "params": count_params(arch),
        "flops": count_flops(arch),
        "precision": precision,
        "latency": {"total_s": total_s, "p50_ms": total_s * 10, "p95_ms": total_s * 12},
        "throughput": 4316 / total_s,
        "accuracy": dict(zip(TASKS, accs)),
    }


def _summary() -> dict[str, Any]:
    six = ModelArch()
    pruned = ModelArch(width=0.75)
    return {
        "tasks": TASKS,
        "benchmark": {"task": "tnews", "split": "dev", "batch_size": 32, "max_seq_len": 128},
        "models": [
            _row("BERT-base shape FP32", bert_base_arch(), 21.04, (0.7417, 0.5717)),
            _row("PP-MiniLM 6L FP32", six, 12.64, (0.7428, 0.5733)),
            _row("pruned 0.75 FP32", pruned, 10.54, (0.7382, 0.5733)),
            _row("pruned 0.75 INT8", pruned, 5.07, (0.7361, 0.5718), precision="int8"),
        ],
        "grid": {
            t: [
                {"batch_size": b, "learning_rate": lr, "dev_acc": 0.5 + b / 1000 + lr * 100}
                for b in (16, 32, 64)
                for lr in (3e-5, 5e-5, 1e-4)
            ]
            for t in TASKS
        },
        "quantization": [
            {"algo": a, "batch_num": n, "acc": 0.57 - i / 100, "task": "tnews", "selected": i == 0}
            for i, (a, n) in enumerate([("mse", 4), ("abs_max", 8), ("hist", 4)])
        ],
        "distill_loss": [{"step": s, "loss": 2.0 / (1 + s / 100)} for s in range(0, 1000, 50)],
        "environment": {"cpu": "Test CPU", "threads": 2, "versions": {"paddlepaddle": "2.6.2"}},
    }


def _table_rows(md: str, title: str) -> list[list[str]]:
    section = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]


def test_summary_table_has_the_seed_numbers(tmp_path: Path) -> None:
    paths = build_report(_summary(), tmp_path)
    md = Path(paths["markdown"]).read_text("utf-8")
    rows = _table_rows(md, "Summary")
    assert rows[0] == ["Model", "#Params", "#FLOPs", "Speedup", "AFQMC", "TNEWS", "Avg"]
    assert rows[2] == [
        "BERT-base shape FP32",
        "102.3M",
        "10.87B",
        "1.00x",
        "74.17",
        "57.17",
        "65.67",
    ]
    assert rows[3][:4] == ["PP-MiniLM 6L FP32", "59.7M", "5.44B", "1.66x"]
    assert rows[4][:4] == ["pruned 0.75 FP32", "49.1M", "4.08B", "2.00x"]
    assert rows[5][:4] == ["pruned 0.75 INT8", "49.1M", "4.08B", "4.15x"]
    assert _table_rows(md, "Latency")[5][:3] == ["pruned 0.75 INT8", "INT8", "5.07"]
    # The pruned rows show what width 0.75 keeps: 9 heads, FFN 2304.
    assert _table_rows(md, "Architectures")[4] == [
        "pruned 0.75 FP32",
        "6",
        "768",
        "9",
        "2304",
        "0.75",
    ]
    grid = _table_rows(md, "Grid search: afqmc")
    assert len(grid) == 2 + 9 and sum("(best)" in r[2] for r in grid) == 1
    assert "(best)" in grid[-1][2]  # bs 64, lr 1e-4 has the highest synthetic accuracy
    quant = _table_rows(md, "Quantization candidates")
    assert quant[2] == ["tnews", "mse", "4", "57.00", "yes"]
    assert "- cpu: Test CPU" in md and "paddlepaddle 2.6.2" in md


def test_html_is_self_contained_with_inlined_pngs(tmp_path: Path) -> None:
    paths = build_report(_summary(), tmp_path)
    assert set(paths["plots"]) == {
        "accuracy_vs_latency",
        "grid_afqmc",
        "grid_tnews",
        "distill_loss",
    }
    page = Path(paths["html"]).read_text("utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(paths["plots"])
    for data in images:
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    assert "<table>" in page and "102.3M" in page and "4.15x" in page
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from outside
    for plot in paths["plots"].values():
        size = Path(plot).stat().st_size
        assert MIN_PNG_BYTES < size < MAX_PNG_BYTES
        assert Path(plot).read_bytes().startswith(PNG_MAGIC)


def test_metrics_json_headline_numbers(tmp_path: Path) -> None:
    metrics = json.loads(Path(build_report(_summary(), tmp_path)["metrics"]).read_text("utf-8"))
    int8 = metrics["models"][3]
    assert int8["speedup"] == pytest.approx(21.04 / 5.07)
    assert int8["avg_acc"] == pytest.approx((0.7361 + 0.5718) / 2)
    assert int8["params"] == 49_115_520
    assert metrics["grid_best"]["tnews"]["batch_size"] == 64
    assert metrics["quantization_best"]["algo"] == "mse"


def test_optional_sections_are_skipped(tmp_path: Path) -> None:
    summary = _summary()
    for key in ("grid", "quantization", "distill_loss", "environment", "benchmark"):
        del summary[key]
    for row in summary["models"]:
        del row["latency"], row["arch"]
    paths = build_report(summary, tmp_path)
    md = Path(paths["markdown"]).read_text("utf-8")
    assert "## Summary" in md and "## Grid" not in md and "## Quantization" not in md
    assert "## Latency" not in md and "## Plots" not in md and paths["plots"] == {}
    assert _table_rows(md, "Summary")[3][3] == "-"  # no latency, no speed-up


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("models"), "'models' is missing"),
        (lambda s: s.update(models=[]), "'models' is empty"),
        (lambda s: s["models"][2].update(params="49M"), "'models[2].params': expected an integer"),
        (lambda s: s["models"][1]["accuracy"].update(tnews=57.3), "'models[1].accuracy.tnews'"),
        (lambda s: s["models"][0]["latency"].update(total_s=-1), "'models[0].latency.total_s'"),
        (lambda s: s["grid"]["afqmc"][3].pop("dev_acc"), "'grid.afqmc[3].dev_acc' is missing"),
        (lambda s: s["quantization"][1].update(batch_num=True), "'quantization[1].batch_num'"),
        (lambda s: s.update(grid=[1]), "'grid': expected an object"),
    ],
)
def test_malformed_summary_names_the_field(tmp_path: Path, mutate, field: str) -> None:
    summary = copy.deepcopy(_summary())
    mutate(summary)
    with pytest.raises(ReportError, match=re.escape(field)):
        build_report(summary, tmp_path / "out")
    assert not (tmp_path / "out" / "report.md").exists()


def test_run_report_reads_json_and_names_bad_lines(tmp_path: Path) -> None:
    good = tmp_path / "summary.json"
    good.write_text(json.dumps(_summary()), "utf-8")
    assert Path(run_report(good, tmp_path / "r")["html"]).is_file()
    bad = tmp_path / "bad.json"
    bad.write_text('{\n"models": [\n', "utf-8")
    with pytest.raises(ReportError, match=r"bad\.json:3:\d+: invalid JSON"):
        run_report(bad, tmp_path / "r2")
    with pytest.raises(FileNotFoundError):
        run_report(tmp_path / "missing.json", tmp_path / "r3")


def test_cli_report(tmp_path: Path, capsys) -> None:
    from ppminilm.cli import EXIT_USAGE, main

    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps(_summary()), "utf-8")
    assert main(["report", "--summary", str(summary), "--out-dir", str(tmp_path / "r")]) == 0
    assert Path(json.loads(capsys.readouterr().out)["markdown"]).is_file()
    summary.write_text(json.dumps({"models": [{"name": "x"}]}), "utf-8")
    assert main(["report", "--summary", str(summary), "--out-dir", str(tmp_path / "s")]) == (
        EXIT_USAGE
    )


def test_markdown_images_inlined_for_the_kubeflow_ui(tmp_path: Path) -> None:
    from ppminilm.report.render import inline_markdown_images

    paths = build_report(_summary(), tmp_path)
    md = inline_markdown_images(paths["markdown"])
    assert "](plots/" not in md
    assert md.count("](data:image/png;base64,") == len(paths["plots"]) > 0
