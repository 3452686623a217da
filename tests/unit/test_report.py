"""Tests of the final report: table formatting from exact counts, notes, plots, escaping, errors."""

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
from ppminilm.report.plots import MIN_ACC_SPAN, acc_limits
from ppminilm.report.render import ReportError, build_report, run_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: A readable plot is more than a blank canvas but stays small enough to inline.
MIN_PNG_BYTES = 5_000
MAX_PNG_BYTES = 400_000
TASKS = ["afqmc", "tnews"]
#: The seed's seconds per dev pass (BERT-base, 6L, pruned, INT8).
SEED_SECONDS = (21.04, 12.64, 10.54, 5.07)


def _row(
    key: str,
    name: str,
    arch: ModelArch,
    seconds: float,
    accs: tuple[float, float] | None,
    precision: str = "fp32",
) -> dict[str, Any]:
    base = SEED_SECONDS[0]
    return {
        "key": key,
        "name": name,
        "arch": arch.to_dict(),
        "params": count_params(arch),
        "flops": count_flops(arch),
        "precision": precision,
        "speed": {
            "seconds_per_pass": seconds,
            "speedup": base / seconds,
            "low": base / seconds * 0.97,
            "high": base / seconds * 1.03,
        },
        "latency_p50_ms": seconds * 10,
        "latency_p95_ms": seconds * 12,
        "throughput": 4316 / seconds,
        "accuracy": dict(zip(TASKS, accs, strict=True)) if accs else {},
        "int8_kernels": True if precision == "int8" else None,
        "note": "" if accs else "random weights, accuracy not measured",
    }


def _summary() -> dict[str, Any]:
    six, pruned = ModelArch(), ModelArch(width=0.75)
    return {
        "tasks": TASKS,
        "seq_len": 128,
        "timing": "timed on tnews dev: rounds interleaved",
        "majority": {"afqmc": 0.69, "tnews": 0.10},
        "teacher": {"final_loss": 2.5, "final_mlm_accuracy": 0.41, "steps": 400},
        "models": [
            _row("baseline", "BERT-base 12L-768H FP32", bert_base_arch(), 21.04, None),
            _row("fp32", "PP-MiniLM 6L-768H FP32", six, 12.64, (0.7428, 0.5733)),
            _row("pruned", "PP-MiniLM 6L-768H width 0.75 FP32", pruned, 10.54, (0.7382, 0.5733)),
            _row(
                "int8", "PP-MiniLM 6L-768H width 0.75 INT8", pruned, 5.07, (0.7361, 0.5718), "int8"
            ),
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
            {
                "algo": a,
                "batch_size": b,
                "batch_num": 1,
                "acc": 0.57 - i / 100,
                "task": "tnews",
                "selected": i == 0,
            }
            for i, (a, b) in enumerate([("mse", 4), ("abs_max", 8), ("hist", 4)])
        ],
        "distill_loss": [{"step": s, "loss": 2.0 / (1 + s / 100)} for s in range(0, 1000, 50)],
        "environment": {"cpu": "Test CPU", "threads": 2, "versions": {"paddlepaddle": "2.6.2"}},
    }


def _table_rows(md: str, title: str) -> list[list[str]]:
    section = md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    # Cells are separated by unescaped pipes (a pipe in a user string is written \|).
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln[1:-1])] for ln in lines]


def test_summary_table_has_the_seed_numbers(tmp_path: Path) -> None:
    paths = build_report(_summary(), tmp_path)
    md = Path(paths["markdown"]).read_text("utf-8")
    rows = _table_rows(md, "Summary")
    assert rows[0] == [
        "Model", "#Params", "#FLOPs (seq 128)", "Speedup", "AFQMC", "TNEWS", "Avg",
    ]  # fmt: skip
    assert rows[2] == ["BERT-base 12L-768H FP32", "102.3M", "10.87B", "1.00x ±3%", "n/m", "n/m",
                       "n/m"]  # fmt: skip
    assert rows[3][:4] == ["PP-MiniLM 6L-768H FP32", "59.7M", "5.44B", "1.66x ±3%"]
    assert rows[4][:4] == ["PP-MiniLM 6L-768H width 0.75 FP32", "49.1M", "4.08B", "2.00x ±3%"]
    assert rows[5][:4] == ["PP-MiniLM 6L-768H width 0.75 INT8", "49.1M", "4.08B", "4.15x ±3%"]
    assert rows[5][4:] == ["73.61", "57.18", "65.40"]
    latency = _table_rows(md, "Latency")
    assert latency[5][:4] == ["PP-MiniLM 6L-768H width 0.75 INT8", "INT8", "yes", "5.070"]
    assert latency[3][2] == "-"  # FP32 rows: no INT8 check
    # The pruned rows show what width 0.75 keeps: 9 heads, FFN 2304.
    assert _table_rows(md, "Architectures")[4] == [
        "PP-MiniLM 6L-768H width 0.75 FP32", "6", "768", "9", "2304", "0.75",
    ]  # fmt: skip
    grid = _table_rows(md, "Grid search: afqmc")
    assert len(grid) == 2 + 9 and sum("(best)" in r[2] for r in grid) == 1
    assert "(best)" in grid[-1][2]  # bs 64, lr 1e-4 has the highest synthetic accuracy
    ptq = _table_rows(md, "Quantization candidates (calibrated on a train sample, inputs only)")
    assert ptq[0] == [
        "Task", "Width", "Algo", "Calib batch size", "Batch num", "Dev acc", "Selected",
    ]  # fmt: skip
    assert ptq[2] == ["tnews", "1", "mse", "4", "1", "57.00", "yes"]
    assert ptq[3][:5] == ["tnews", "1", "abs_max", "8", "1"]
    assert "- cpu: Test CPU" in md and "paddlepaddle 2.6.2" in md


def test_notes_state_floor_protocol_baseline_and_teacher(tmp_path: Path) -> None:
    md = Path(build_report(_summary(), tmp_path)["markdown"]).read_text("utf-8")
    notes = md.split("## Summary", 1)[1].split("## Latency", 1)[0]
    assert "Majority-class accuracy (the floor to beat): afqmc 69.00, tnews 10.00" in notes
    assert "at 128 tokens" in notes and "timed on tnews dev" in notes
    assert "speed baseline (1.00x): random weights, accuracy not measured" in notes
    assert "final loss 2.500, masked-token accuracy 41.0%" in notes
    assert (
        "Every selection (grid point, pruning checkpoint, PTQ candidate, search candidate) was "
        "made on dev" in notes
    )
    assert "fine-tuning trained on the whole train split" in notes
    assert "calibration: inputs only, no labels" in notes
    assert "Test accuracy" not in notes  # no row has a test accuracy


def test_test_accuracy_table_and_note(tmp_path: Path) -> None:
    summary = _summary()
    for row, acc in zip(summary["models"][1:], (0.70, 0.69, 0.68), strict=True):
        row["test_accuracy"] = {"afqmc": acc}
    md = Path(build_report(summary, tmp_path)["markdown"]).read_text("utf-8")
    rows = _table_rows(md, "Test accuracy (labelled test split; no selection saw it)")
    assert rows[0] == ["Model", "AFQMC", "TNEWS"]
    assert rows[3] == ["PP-MiniLM 6L-768H FP32", "70.00", "n/m"]
    assert "Test accuracy (afqmc): the labelled test split, scored once at the end" in md


def test_html_is_self_contained_with_inlined_pngs(tmp_path: Path) -> None:
    paths = build_report(_summary(), tmp_path)
    assert set(paths["plots"]) == {
        "accuracy_vs_latency", "grid_afqmc", "grid_tnews", "ptq_candidates", "distill_loss",
    }  # fmt: skip
    page = Path(paths["html"]).read_text("utf-8")
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == len(paths["plots"])
    for data in images:
        assert base64.b64decode(data).startswith(PNG_MAGIC)
    assert "<table>" in page and "102.3M" in page and "4.15x" in page
    assert not re.search(r'src="(?!data:)', page)  # nothing fetched from outside
    md = Path(paths["markdown"]).read_text("utf-8")
    assert "data:image" not in md and md.count("](plots/") == len(paths["plots"])
    for plot in paths["plots"].values():
        size = Path(plot).stat().st_size
        assert MIN_PNG_BYTES < size < MAX_PNG_BYTES
        assert Path(plot).read_bytes().startswith(PNG_MAGIC)


def test_report_json_headline_numbers(tmp_path: Path) -> None:
    record = json.loads(Path(build_report(_summary(), tmp_path)["json"]).read_text("utf-8"))
    headline = record["headline"]
    assert headline["speedup"] == pytest.approx(21.04 / 5.07)
    assert headline["avg_dev_acc"] == pytest.approx((0.7361 + 0.5718) / 2)
    assert headline["best_avg_dev_acc"] == pytest.approx((0.7428 + 0.5733) / 2)
    assert headline["params_millions"] == pytest.approx(49.11552)
    assert record["summary"]["models"][0]["key"] == "baseline"


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    summary = _summary()
    evil = "<script>alert(1)</script>|x"
    summary["tasks"] = [evil, "tnews"]
    for row in summary["models"][1:]:
        row["accuracy"] = {evil: row["accuracy"]["afqmc"], "tnews": row["accuracy"]["tnews"]}
    summary["grid"] = {evil: summary["grid"]["afqmc"]}
    summary["quantization"][0]["task"] = evil
    summary["models"][2]["name"] = "<b>pruned</b>"
    paths = build_report(summary, tmp_path)
    for kind in ("markdown", "html"):
        text = Path(paths[kind]).read_text("utf-8")
        assert "<script>" not in text and "<b>pruned</b>" not in text, kind
        assert "&lt;script&gt;" in text, kind
    md = Path(paths["markdown"]).read_text("utf-8")
    # The pipe in the task name is escaped: the table keeps its column count.
    header = _table_rows(md, "Summary")[0]
    assert len(header) == 7
    assert all(Path(p).is_file() for p in paths["plots"].values())


def test_accuracy_axes_do_not_exaggerate() -> None:
    lo, hi = acc_limits([78.6, 79.1])
    assert hi - lo >= MIN_ACC_SPAN and lo <= 78.6 and hi >= 79.1
    assert acc_limits([0.5, 1.0])[0] == 0.0 and acc_limits([99.5, 99.9])[1] == 100.0
    lo, hi = acc_limits([40.0, 90.0])
    assert lo < 40.0 and hi > 90.0 and hi - lo < 60.0


def test_optional_sections_are_skipped(tmp_path: Path) -> None:
    summary = _summary()
    for key in ("grid", "quantization", "distill_loss", "environment", "majority", "teacher"):
        del summary[key]
    for row in summary["models"]:
        del row["speed"], row["arch"]
    paths = build_report(summary, tmp_path)
    md = Path(paths["markdown"]).read_text("utf-8")
    assert "## Summary" in md and "## Grid" not in md and "## Quantization" not in md
    assert "## Plots" not in md and paths["plots"] == {} and "Majority" not in md
    assert _table_rows(md, "Summary")[3][3] == "-"  # not timed: no speed-up


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("models"), "missing 1 required"),
        (lambda s: s.update(models=[]), "RunSummary.models is empty"),
        (lambda s: s["models"][2].update(params="49M"), "ModelRow.params='49M': expected an int"),
        (lambda s: s["models"][1]["accuracy"].update(tnews=57.3), "accuracy['tnews']=57.3"),
        (lambda s: s["models"][0]["speed"].update(speedup="fast"), "Speed.speedup='fast'"),
        (lambda s: s["grid"]["afqmc"][3].pop("dev_acc"), "GridCell: "),
        (lambda s: s["quantization"][1].update(batch_num=True), "QuantRow.batch_num=True"),
        (lambda s: s.update(grid=[1]), "RunSummary.grid=[1]: expected an object"),
        (lambda s: s.update(colour="blue"), "unknown RunSummary key(s) ['colour']"),
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
    first = build_report(_summary(), tmp_path / "r0")
    assert Path(run_report(good, tmp_path / "r")["html"]).is_file()
    assert Path(run_report(first["json"], tmp_path / "r1")["html"]).is_file()  # a report.json
    bad = tmp_path / "bad.json"
    bad.write_text('{\n"models": [\n', "utf-8")
    with pytest.raises(ReportError, match=r"bad\.json:3:\d+: invalid JSON"):
        run_report(bad, tmp_path / "r2")
    with pytest.raises(ReportError, match=r"missing\.json: no such file"):
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


def _search(task: str, budget: float) -> dict[str, Any]:
    """A search over the seed's shapes: FP32, and width 0.75 / 0.5 in FP32 and INT8."""
    from ppminilm.contracts import SearchCandidate
    from ppminilm.stages.search import select

    def cand(width: float, precision: str, acc: float, seconds: float) -> SearchCandidate:
        arch = ModelArch(width=width)
        return SearchCandidate(
            key=f"6L-w{width:g}-{precision}",
            width=width,
            num_layers=6,
            precision=precision,
            dev_acc=acc,
            drop_points=0.0,
            params=count_params(arch),
            flops=count_flops(arch),
            seconds_per_pass=seconds,
            fastest_s=seconds * 0.98,
            slowest_s=seconds * 1.02,
            speedup=21.04 / seconds,
            test_acc=acc - 0.01,
        )

    candidates = [
        cand(1.0, "fp32", 0.7428, 12.64),
        cand(0.75, "fp32", 0.7382, 10.54),
        cand(0.75, "int8", 0.7361, 5.07),
        cand(0.5, "fp32", 0.7200, 8.0),
        cand(0.5, "int8", 0.7150, 3.9),
    ]
    return select(candidates, "6L-w1-fp32", budget, task=task, report_split="test").to_dict()


def test_search_frontier_table_notes_plot_and_headline(tmp_path: Path) -> None:
    summary = _summary()
    summary["search"] = {"afqmc": _search("afqmc", 1.0), "tnews": _search("tnews", 0.1)}
    paths = build_report(summary, tmp_path)
    md = Path(paths["markdown"]).read_text("utf-8")
    rows = _table_rows(md, "Compression search: afqmc (budget 1 points)")
    header = rows[0]
    assert header[:6] == ["Candidate", "Engine", "#Params", "#FLOPs (seq 128)", "Dev acc",
                          "Δ vs FP32 (points)"]  # fmt: skip
    assert "Test acc" in header and "Within budget" in header
    by = {r[0]: dict(zip(header, r, strict=True)) for r in rows[2:]}
    assert len(by) == 5
    assert by["6L-w0.75-int8"]["Chosen"] == "CHOSEN"  # 0.67 points down, the fastest within 1
    assert by["6L-w0.75-int8"]["Δ vs FP32 (points)"] == "-0.67"
    assert by["6L-w0.5-int8"]["Within budget"] == "no"  # 2.78 points down
    assert by["6L-w1-fp32 (FP32 reference)"]["#Params"] == "59.7M"
    assert by["6L-w0.75-int8"]["Rounds (s)"] == "4.969-5.171"
    section = md.split("## Compression search: afqmc", 1)[1].split("\n## ", 1)[0]
    assert "Chosen: 6L-w0.75-int8." in section and "Rule: fastest candidate" in section
    assert "no selection saw it" in section
    tight = md.split("## Compression search: tnews", 1)[1].split("\n## ", 1)[0]
    assert "No compressed candidate is within 0.1 points" in tight
    notes = md.split("## Summary", 1)[1].split("## Latency", 1)[0]
    assert "kept afqmc: 6L-w0.75-int8; tnews: 6L-w1-fp32 (FP32 kept" in notes
    assert {"search_afqmc", "search_tnews"} <= set(paths["plots"])
    png = Path(paths["plots"]["search_afqmc"])
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > MIN_PNG_BYTES
    headline = json.loads(Path(paths["json"]).read_text("utf-8"))["headline"]
    assert headline["avg_dev_acc"] == pytest.approx((0.7361 + 0.7428) / 2)  # the chosen ones
    assert headline["speedup"] == pytest.approx((21.04 / 5.07 + 21.04 / 12.64) / 2)
    assert headline["kept_fp32_tasks"] == 1.0
