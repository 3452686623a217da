"""The final report: the seed's summary table from real numbers, notes, tables and plots.

Input: a :class:`~ppminilm.report.schema.RunSummary` (or its JSON form). Output directory,
written all or nothing: ``report.md`` (plots as ``plots/*.png`` beside it, relative links),
``report.html`` (self-contained: plots inlined), ``report.json`` (the run summary and the
headline numbers). Every string that comes from the user's data (task names, labels, model
names) is escaped in both Markdown and HTML.

The summary table follows the seed: the first row is the speed baseline (1.00x; BERT-base on
the cluster profile, the local teacher's shape on the local profile, timed with random
weights), then the fine-tuned 6-layer model, the pruned one and its INT8 version. FLOPs are
counted at the sequence length the rows ran at; the notes under the table give the
majority-class accuracy, the timing protocol and which split every selection used.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.io import read_json_file, staged_dir, write_json
from ppminilm.modeling.accounting import format_count
from ppminilm.report.frontier import frontier_notes, frontier_table, search_summary_notes
from ppminilm.report.markdown import Table, html_table, md_escape, md_table
from ppminilm.report.schema import ModelRow, ReportError, RunSummary, validate_summary

__all__ = [
    "ReportError",
    "build_report",
    "headline_metrics",
    "md_escape",
    "run_report",
    "validate_summary",
]

logger = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
PLOTS_DIR = "plots"

#: Column names as the seed's table spells them; other tasks keep their own name.
TASK_COLUMNS = {
    "afqmc": "AFQMC",
    "tnews": "TNEWS",
    "iflytek": "IFLYTEK",
    "cmnli": "CMNLI",
    "ocnli": "OCNLI",
    "cluewsc2020": "WSC",
    "csl": "CSL",
}


# --------------------------------------------------------------------------- cells


def _pct(value: float | None) -> str:
    return "n/m" if value is None else f"{value * 100:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def avg_accuracy(row: ModelRow, tasks: Sequence[str]) -> float | None:
    """Mean accuracy over ``tasks``, or None when a task was not measured for the row."""
    accs = [row.accuracy.get(t) for t in tasks]
    return None if not accs or any(a is None for a in accs) else sum(accs) / len(accs)  # type: ignore[arg-type]


def speedup_text(row: ModelRow) -> str:
    """``2.41x ±3%`` (trimmed mean of the rounds' ratios, half their range); ``-`` untimed."""
    if row.speed is None:
        return "-"
    s = row.speed
    spread = (s.high - s.low) / 2 / s.speedup * 100 if s.speedup else 0.0
    return f"{s.speedup:.2f}x ±{spread:.0f}%"


def _int8_cell(row: ModelRow) -> str:
    if row.int8_kernels is None:
        return "-"
    return "yes" if row.int8_kernels else "NO (ran as FP32)"


# --------------------------------------------------------------------------- tables


def tables(s: RunSummary) -> list[Table]:
    """The report's tables as ``(title, header, rows)``, already formatted (not escaped)."""
    tasks = list(s.tasks)
    out: list[Table] = [
        (
            "Summary",
            [
                "Model",
                "#Params",
                f"#FLOPs (seq {s.seq_len})",
                "Speedup",
                *[TASK_COLUMNS.get(t, t) for t in tasks],
                "Avg",
            ],
            [
                [
                    r.name,
                    format_count(r.params, "M"),
                    format_count(r.flops, "B"),
                    speedup_text(r),
                    *[_pct(r.accuracy.get(t)) for t in tasks],
                    _pct(avg_accuracy(r, tasks)),
                ]
                for r in s.models
            ],
        ),
        (
            "Latency",
            [
                "Model",
                "Precision",
                "INT8 kernels",
                "s / dev pass",
                "p50 batch (ms)",
                "p95 batch (ms)",
                "Throughput (ex/s)",
            ],
            [
                [
                    r.name,
                    r.precision.upper(),
                    _int8_cell(r),
                    _num(r.speed.seconds_per_pass if r.speed else None, ".3f"),
                    _num(r.latency_p50_ms, ".2f"),
                    _num(r.latency_p95_ms, ".2f"),
                    _num(r.throughput, ".1f"),
                ]
                for r in s.models
            ],
        ),
    ]
    if any(r.arch for r in s.models):
        out.append(
            (
                "Architectures",
                ["Model", "Layers", "Hidden", "Heads", "FFN", "Width"],
                [[r.name, *_arch_cells(r.arch)] for r in s.models],
            )
        )
    if any(r.test_accuracy for r in s.models):
        out.append(
            (
                "Test accuracy (labelled test split; no selection saw it)",
                ["Model", *[TASK_COLUMNS.get(t, t) for t in tasks]],
                [[r.name, *[_pct(r.test_accuracy.get(t)) for t in tasks]] for r in s.models],
            )
        )
    out += [frontier_table(sel, s.seq_len) for sel in s.search.values()]
    for task, points in s.grid.items():
        best = max(points, key=lambda p: p.dev_acc)
        out.append(
            (
                f"Grid search: {task}",
                ["Batch size", "Learning rate", "Dev acc"],
                [
                    [
                        str(p.batch_size),
                        f"{p.learning_rate:g}",
                        _pct(p.dev_acc) + (" (best)" if p is best else ""),
                    ]
                    for p in points
                ],
            )
        )
    if s.quantization:
        out.append(
            (
                "Quantization candidates (calibrated on a train sample, inputs only)",
                ["Task", "Width", "Algo", "Calib batch size", "Batch num", "Dev acc", "Selected"],
                [
                    [
                        q.task,
                        f"{q.width:g}",
                        q.algo,
                        str(q.batch_size) if q.batch_size else "-",
                        str(q.batch_num),
                        _pct(q.acc),
                        "yes" if q.selected else "",
                    ]
                    for q in s.quantization
                ],
            )
        )
    return out


def _arch_cells(arch: Mapping[str, Any]) -> list[str]:
    """Layers, hidden, heads and FFN *kept* at the row's width (what the pruned model runs)."""
    width = float(arch.get("width", 1.0))

    def kept(key: str) -> str:
        value = arch.get(key)
        return "-" if not isinstance(value, int) else str(round(value * width))

    return [
        str(arch.get("num_layers", "-")),
        str(arch.get("hidden_size", "-")),
        kept("num_heads"),
        kept("intermediate_size"),
        f"{width:g}",
    ]


def notes(s: RunSummary) -> list[str]:
    """The sentences under the summary table (plain text, not escaped)."""
    out = []
    if s.models and s.models[0].note:
        out.append(
            f"First row: {s.models[0].name}, the speed baseline (1.00x): {s.models[0].note}."
        )
    out.append(
        f"Accuracy: {s.split} accuracy in %; n/m = not measured. Every selection (grid point, "
        f"pruning checkpoint, PTQ candidate, search candidate) was made on {s.split}, as the "
        "seed and the CLUE convention do (CLUE's test labels are not public)."
    )
    out.append(
        "Splits: fine-tuning trained on the whole train split; PTQ calibration and head/neuron "
        "importance used deterministic samples of train (calibration: inputs only, no labels)."
    )
    tested = sorted({t for r in s.models for t in r.test_accuracy})
    if tested:
        out.append(
            f"Test accuracy ({', '.join(tested)}): the labelled test split, scored once at the "
            "end; no selection saw it."
        )
    out += search_summary_notes(s.search)
    if s.majority:
        floors = ", ".join(f"{t} {v * 100:.2f}" for t, v in s.majority.items())
        out.append(f"Majority-class accuracy (the floor to beat): {floors}.")
    out.append(f"#FLOPs: dense encoder multiply-accumulates per sequence at {s.seq_len} tokens.")
    if s.timing:
        out.append(f"Speedup: {s.timing}; ± is half the range of the rounds' ratios.")
    if s.teacher:
        t = s.teacher
        if "final_loss" in t:
            acc = t.get("final_mlm_accuracy")
            acc_text = f", masked-token accuracy {acc * 100:.1f}%" if acc is not None else ""
            out.append(
                f"Teacher: pre-trained here by MLM for {t.get('steps', '?')} steps, final loss "
                f"{t['final_loss']:.3f}{acc_text}."
            )
        else:
            out.append(f"Teacher: imported from {t.get('source', 'a pretrained directory')}.")
    return out


def table_notes(s: RunSummary) -> dict[str, list[str]]:
    """Notes printed under a table, by table title."""
    out = {"Summary": notes(s)}
    for sel in s.search.values():
        out[frontier_table(sel, s.seq_len)[0]] = frontier_notes(sel)
    return out


def _environment_lines(s: RunSummary) -> list[str]:
    lines = []
    for key, value in s.environment.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"{key}: {value}")
    return lines


_CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1100px}table{border-collapse:collapse;margin:8px 0 12px}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f0f3f7}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:6px 12px 6px 0}
h1{font-size:22px}h2{font-size:17px;margin-top:26px}.notes li{margin:2px 0}
ul.env li{font-family:monospace}"""


# --------------------------------------------------------------------------- output


def _plots(s: RunSummary, plot_dir: Path) -> dict[str, Path]:
    from ppminilm.report import plots as report_plots

    plot_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    timed = [r for r in s.models if r.speed is not None and avg_accuracy(r, s.tasks) is not None]
    if timed:
        out["accuracy_vs_latency"] = report_plots.accuracy_vs_latency(
            [
                (r.name, r.speed.seconds_per_pass, avg_accuracy(r, s.tasks) * 100)  # type: ignore[union-attr,operator]
                for r in timed
            ],
            floor=(sum(s.majority.values()) / len(s.majority) * 100) if s.majority else None,
            path=plot_dir / "accuracy_vs_latency.png",
        )
    for task, sel in s.search.items():
        out[f"search_{task}"] = report_plots.search_frontier(
            task,
            [
                (c.key, c.seconds_per_pass, c.fastest_s, c.slowest_s, c.dev_acc * 100, c.chosen)
                for c in sel.candidates
            ],
            reference=sel.reference_dev_acc * 100,
            budget=sel.budget_points,
            path=plot_dir / f"search_{_file_safe(task)}.png",
        )
    for task, points in s.grid.items():
        out[f"grid_{task}"] = report_plots.grid_heatmap(
            task,
            [(p.batch_size, p.learning_rate, p.dev_acc * 100) for p in points],
            plot_dir / f"grid_{_file_safe(task)}.png",
        )
    if s.quantization:
        out["ptq_candidates"] = report_plots.quant_candidates(
            [
                (f"{q.task} w{q.width:g}: {q.label}", q.acc * 100, q.selected)
                for q in s.quantization
            ],
            reference=_fp32_reference(s),
            path=plot_dir / "ptq_candidates.png",
        )
    if s.distill_loss:
        out["distill_loss"] = report_plots.loss_curve(
            [(p.step, p.loss) for p in s.distill_loss], plot_dir / "distill_loss.png"
        )
    return out


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "task"


def _fp32_reference(s: RunSummary) -> float | None:
    """The pruned FP32 row's accuracy on the first task (what PTQ candidates lose from);
    None when the candidates come from several widths (each loses from its own)."""
    widths = {q.width for q in s.quantization}
    fp32 = [
        r
        for r in s.models
        if r.precision == "fp32"
        and r.arch.get("width", 1.0) < 1.0
        and (len(widths) != 1 or float(r.arch.get("width", 1.0)) in widths)
    ]
    if len(widths) > 1 or not fp32 or not s.tasks:
        return None
    acc = fp32[0].accuracy.get(s.tasks[0])
    return None if acc is None else acc * 100


def headline_metrics(s: RunSummary) -> dict[str, float]:
    """Run-comparison numbers of the chosen models: accuracy, speed-up, size.

    With a compression search: the mean over tasks of each task's chosen candidate (dev
    accuracy, speed-up over the baseline, parameters), and how many tasks kept the FP32 model.
    Without one: the last (most compressed) row.
    """
    if s.search:
        return _chosen_headline(s)
    row = s.models[-1]
    out: dict[str, float] = {"params_millions": row.params / 1e6}
    avg = avg_accuracy(row, s.tasks)
    if avg is not None:
        out["avg_dev_acc"] = avg
    if row.speed is not None:
        out["speedup"] = row.speed.speedup
    best = max(
        (a for a in (avg_accuracy(r, s.tasks) for r in s.models) if a is not None), default=None
    )
    if best is not None:
        out["best_avg_dev_acc"] = best
    return out


def _chosen_headline(s: RunSummary) -> dict[str, float]:
    chosen = [sel.candidate(sel.chosen) for sel in s.search.values()]
    n = len(chosen)
    out = {
        "avg_dev_acc": sum(c.dev_acc for c in chosen) / n,
        "params_millions": sum(c.params for c in chosen) / n / 1e6,
        "kept_fp32_tasks": float(sum(sel.chosen == sel.reference for sel in s.search.values())),
        "avg_drop_points": sum(c.drop_points for c in chosen) / n,
    }
    speedups = [c.speedup for c in chosen if c.speedup is not None]
    if len(speedups) == n:
        out["speedup"] = sum(speedups) / n
    best = max(
        (a for a in (avg_accuracy(r, s.tasks) for r in s.models) if a is not None), default=None
    )
    if best is not None:
        out["best_avg_dev_acc"] = best
    return out


def build_report(
    run_summary: Mapping[str, Any] | RunSummary, out_dir: str | Path
) -> dict[str, Any]:
    """Write ``report.md`` (+ ``plots/*.png``), ``report.html`` and ``report.json``.

    Args:
        run_summary: The run summary (a record, or its JSON form).
        out_dir: Output directory, written all or nothing (a previous report is replaced).

    Returns:
        ``{"markdown", "html", "json", "plots": {name: path}}`` (paths as strings).

    Raises:
        ReportError: If the summary is malformed (nothing is written then).
    """
    s = validate_summary(run_summary)
    target = Path(out_dir)
    with staged_dir(target, replace=True, kind="report") as tmp:
        plots = _plots(s, tmp / PLOTS_DIR)
        md = [f"# {md_escape(s.title)}", ""]
        body = [f"<h1>{html.escape(s.title)}</h1>"]
        under = table_notes(s)
        for title, header, table_rows in tables(s):
            md += [f"## {md_escape(title)}", "", md_table(header, table_rows), ""]
            body += [f"<h2>{html.escape(title)}</h2>", html_table(header, table_rows)]
            lines = under.get(title, [])
            if lines:
                md += [*[f"- {md_escape(n)}" for n in lines], ""]
                body.append(
                    "<ul class='notes'>"
                    + "".join(f"<li>{html.escape(n)}</li>" for n in lines)
                    + "</ul>"
                )
        if plots:
            md += ["## Plots", ""]
            body.append("<h2>Plots</h2>")
            for name, path in plots.items():
                md += [f"![{md_escape(name)}]({PLOTS_DIR}/{path.name})", ""]
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        env = _environment_lines(s)
        if env:
            md += ["## Environment", "", *[f"- {md_escape(line)}" for line in env], ""]
            body += [
                "<h2>Environment</h2><ul class='env'>",
                *[f"<li>{html.escape(line)}</li>" for line in env],
                "</ul>",
            ]
        (tmp / REPORT_MD).write_text("\n".join(md), encoding="utf-8")
        (tmp / REPORT_HTML).write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(s.title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body)
            + "</body></html>\n",
            encoding="utf-8",
        )
        write_json(tmp / REPORT_JSON, {"summary": s.to_dict(), "headline": headline_metrics(s)})
    logger.info("report with %d model rows, %d plots -> %s", len(s.models), len(plots), target)
    return {
        "markdown": str(target / REPORT_MD),
        "html": str(target / REPORT_HTML),
        "json": str(target / REPORT_JSON),
        "plots": {n: str(target / PLOTS_DIR / p.name) for n, p in plots.items()},
    }


def run_report(summary_file: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Stage entry: read a run-summary JSON file (or a ``report.json``) and build the report.

    Raises:
        ReportError: On a missing file, invalid JSON (file and line named) or a malformed
            summary.
    """
    path = Path(summary_file)
    data = read_json_file(path, ReportError)
    if isinstance(data, dict) and "summary" in data and "headline" in data:
        data = data["summary"]  # a report.json
    return build_report(validate_summary(data, where=str(path)), out_dir)


def inline_markdown_images(markdown_path: str | Path) -> str:
    """Return the report Markdown with its ``plots/*.png`` links embedded as data URIs.

    The Kubeflow UI shows a Markdown artifact as one file, so relative image links would
    break there; embedding keeps the plots visible (``report.md`` itself keeps the links).

    Args:
        markdown_path: A ``report.md`` written by :func:`build_report` (plots beside it).
    """
    path = Path(markdown_path)

    def embed(match: re.Match[str]) -> str:
        png = path.parent / match.group(2)
        if not png.is_file():
            return match.group(0)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return re.sub(
        r"!\[([^\]]*)\]\((" + PLOTS_DIR + r"/[^)]+\.png)\)", embed, path.read_text(encoding="utf-8")
    )
