"""The final report: the seed's summary table from real numbers, grid and PTQ tables, plots.

Input: a JSON-able *run summary* the pipeline assembles. Schema (``?`` = optional)::

    {
      "title"?: str,
      "tasks"?: [str],                 # accuracy columns, in order; default: first seen order
      "benchmark"?: {"task": str, "split": str, "batch_size": int, "max_seq_len": int},
      "models": [                      # required, >= 1 row; the FIRST row is the speed baseline
        {"name": str,                  # e.g. "BERT-base shape FP32", "pruned 0.75 INT8"
         "arch"?: {ModelArch fields},  # shape, shown in the model table
         "params": int, "flops": int,  # exact counts (models.count_params / count_flops)
         "precision"?: "fp32" | "fp16" | "int8",
         "latency"?: {"total_s": float, "p50_ms"?: float, "p95_ms"?: float},  # s per dev pass
         "throughput"?: float,         # examples / s
         "accuracy": {task: float}}    # fractions in [0, 1]
      ],
      "grid"?: {task: [{"batch_size": int, "learning_rate": float, "dev_acc": float}]},
      "quantization"?: [{"algo": str, "batch_num": int, "acc": float,
                         "task"?: str, "selected"?: bool}],
      "distill_loss"?: [{"step": int, "loss": float}],
      "environment"?: {"cpu"?: str, "device"?: str, "threads"?: int, "versions"?: {str: str},
                       ...any other str/number fields}
    }

Output files (written to a temp dir, then moved into ``out_dir``): ``report.md``,
``report.html`` (self-contained: plots inlined as base64 PNG), ``metrics.json`` (headline
numbers) and ``plots/*.png``. Optional sections that are missing are skipped; a malformed
summary raises :class:`ReportError` naming the field (``models[2].accuracy.tnews``).
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ppminilm.io import read_json_file, staged_dir, write_json
from ppminilm.modeling.accounting import format_count
from ppminilm.report.schema import ReportError, validate_summary

__all__ = ["ReportError", "build_report", "run_report", "validate_summary"]

logger = logging.getLogger(__name__)

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
METRICS_JSON = "metrics.json"
PLOTS_DIR = "plots"


# --------------------------------------------------------------------------- tables


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}"


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def headline(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per model row: counts, speed-up vs the first row and the average accuracy."""
    base = s["models"][0]["total_s"]
    out = []
    for row in s["models"]:
        accs = [row["accuracy"].get(t) for t in s["tasks"]]
        avg = sum(accs) / len(accs) if accs and None not in accs else None  # type: ignore[arg-type]
        speedup = base / row["total_s"] if base and row["total_s"] else None
        out.append(
            {
                **row,
                "avg_acc": avg,
                "speedup": speedup,
                "speedup_text": "-" if speedup is None else f"{speedup:.2f}x",
            }
        )
    return out


Table = tuple[str, list[str], list[list[str]]]

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


def tables(s: Mapping[str, Any]) -> list[Table]:
    """The report's tables as ``(title, header, rows)``, already formatted."""
    rows = headline(s)
    out: list[Table] = [
        (
            "Summary",
            [
                "Model",
                "#Params",
                "#FLOPs",
                "Speedup",
                *[TASK_COLUMNS.get(t, t) for t in s["tasks"]],
                "Avg",
            ],
            [
                [
                    r["name"],
                    format_count(r["params"], "M"),
                    format_count(r["flops"], "B"),
                    r["speedup_text"],
                    *[_pct(r["accuracy"].get(t)) for t in s["tasks"]],
                    _pct(r["avg_acc"]),
                ]
                for r in rows
            ],
        )
    ]
    if any(r["total_s"] is not None for r in rows):
        out.append(
            (
                "Latency",
                ["Model", "Precision", "Total (s)", "p50 (ms)", "p95 (ms)", "Throughput (ex/s)"],
                [
                    [
                        r["name"],
                        r["precision"].upper() or "-",
                        _num(r["total_s"], ".2f"),
                        _num(r["p50_ms"], ".2f"),
                        _num(r["p95_ms"], ".2f"),
                        _num(r["throughput"], ".1f"),
                    ]
                    for r in rows
                ],
            )
        )
    if any(r["arch"] for r in rows):
        out.append(
            (
                "Architectures",
                ["Model", "Layers", "Hidden", "Heads", "FFN", "Width"],
                [[r["name"], *_arch_cells(r["arch"])] for r in rows],
            )
        )
    for task, points in s["grid"].items():
        if not points:
            continue
        best = max(points, key=lambda p: p["dev_acc"])
        out.append(
            (
                f"Grid search: {task}",
                ["Batch size", "Learning rate", "Dev acc"],
                [
                    [
                        str(p["batch_size"]),
                        f"{p['learning_rate']:g}",
                        _pct(p["dev_acc"]) + (" (best)" if p is best else ""),
                    ]
                    for p in points
                ],
            )
        )
    if s["quantization"]:
        out.append(
            (
                "Quantization candidates",
                ["Task", "Algo", "Batch num", "Acc", "Selected"],
                [
                    [
                        q["task"] or "-",
                        q["algo"],
                        str(q["batch_num"]),
                        _pct(q["acc"]),
                        "yes" if q["selected"] else "",
                    ]
                    for q in s["quantization"]
                ],
            )
        )
    return out


def _arch_cells(arch: Mapping[str, Any]) -> list[str]:
    """Layers, hidden, heads and FFN *kept* at the row's width (what the pruned model runs)."""
    width = arch.get("width", 1.0)

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


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("---" for _ in header) + "|", *[line(r) for r in rows]]
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _environment_lines(s: Mapping[str, Any]) -> list[str]:
    lines = []
    for key, value in {**s["benchmark"], **s["environment"]}.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"{key}: {value}")
    return lines


_CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1100px}table{border-collapse:collapse;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:4px 10px;text-align:right}th{background:#f0f3f7}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:6px 12px 6px 0}
h1{font-size:22px}h2{font-size:17px;margin-top:26px}li{font-family:monospace}"""


# --------------------------------------------------------------------------- output


def _plots(
    s: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], plot_dir: Path
) -> dict[str, Path]:
    from ppminilm.report import plots as report_plots

    plot_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, Path] = {}
    if any(r["total_s"] is not None and r["avg_acc"] is not None for r in rows):
        plots["accuracy_vs_latency"] = report_plots.accuracy_vs_latency(
            rows, plot_dir / "accuracy_vs_latency.png"
        )
    for task, points in s["grid"].items():
        if points:
            plots[f"grid_{task}"] = report_plots.grid_heatmap(
                task, points, plot_dir / f"grid_{task}.png"
            )
    if s["distill_loss"]:
        plots["distill_loss"] = report_plots.loss_curve(
            s["distill_loss"], plot_dir / "distill_loss.png"
        )
    return plots


def _metrics(s: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = (
        "name",
        "precision",
        "params",
        "flops",
        "speedup",
        "avg_acc",
        "total_s",
        "p50_ms",
        "p95_ms",
        "throughput",
        "accuracy",
    )
    out: dict[str, Any] = {"tasks": s["tasks"], "models": [{k: r[k] for k in keys} for r in rows]}
    if s["grid"]:
        out["grid_best"] = {
            t: max(p, key=lambda x: x["dev_acc"]) for t, p in s["grid"].items() if p
        }
    if s["quantization"]:
        chosen = [q for q in s["quantization"] if q["selected"]]
        out["quantization_best"] = (
            chosen[0] if chosen else max(s["quantization"], key=lambda q: q["acc"])
        )
    return out


def build_report(run_summary: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Write ``report.md``, ``report.html``, ``metrics.json`` and PNG plots.

    Args:
        run_summary: The run summary (schema in the module docstring).
        out_dir: Output directory, written all or nothing (a previous report is replaced).

    Returns:
        ``{"markdown", "html", "metrics", "plots": {name: path}}`` (paths as strings).

    Raises:
        ReportError: If the summary is malformed (nothing is written then).
    """
    s = validate_summary(run_summary)
    rows = headline(s)
    target = Path(out_dir)
    with staged_dir(target, replace=True, kind="report") as tmp:
        plots = _plots(s, rows, tmp / PLOTS_DIR)
        md = [f"# {s['title']}", ""]
        body = [f"<h1>{html.escape(s['title'])}</h1>"]
        for title, header, table_rows in tables(s):
            md += [f"## {title}", "", _md_table(header, table_rows), ""]
            body += [f"<h2>{html.escape(title)}</h2>", _html_table(header, table_rows)]
            if title == "Summary":
                note = (
                    "Speedup = seconds per dev pass of the first row / this row; accuracy in "
                    "%; #FLOPs at sequence length 128."
                )
                md += [f"_{note}_", ""]
                body.append(f"<p><em>{html.escape(note)}</em></p>")
        if plots:
            md += ["## Plots", ""] + [f"![{n}]({PLOTS_DIR}/{p.name})" for n, p in plots.items()]
            md.append("")
            body.append("<h2>Plots</h2>")
            for name, path in plots.items():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        env = _environment_lines(s)
        if env:
            md += ["## Environment", "", *[f"- {line}" for line in env], ""]
            body += [
                "<h2>Environment</h2><ul>",
                *[f"<li>{html.escape(line)}</li>" for line in env],
                "</ul>",
            ]
        (tmp / REPORT_MD).write_text("\n".join(md), encoding="utf-8")
        (tmp / REPORT_HTML).write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(s['title'])}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body)
            + "</body></html>\n",
            encoding="utf-8",
        )
        write_json(tmp / METRICS_JSON, _metrics(s, rows))
    logger.info("report with %d model rows, %d plots -> %s", len(rows), len(plots), target)
    return {
        "markdown": str(target / REPORT_MD),
        "html": str(target / REPORT_HTML),
        "metrics": str(target / METRICS_JSON),
        "plots": {n: str(target / PLOTS_DIR / p.name) for n, p in plots.items()},
    }


def run_report(summary_file: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Stage entry: read a run-summary JSON file and build the report.

    Args:
        summary_file: JSON file holding the run summary.
        out_dir: Output directory.

    Returns:
        :func:`build_report`'s paths.

    Raises:
        FileNotFoundError: If the file is missing.
        ReportError: On invalid JSON (file and line named) or a malformed summary.
    """
    path = Path(summary_file)
    if not path.is_file():
        raise FileNotFoundError(f"run summary {path} does not exist")
    summary = read_json_file(path, ReportError)
    try:
        return build_report(summary, out_dir)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from exc


def inline_markdown_images(markdown_path: str | Path) -> str:
    """Return the report Markdown with its ``plots/*.png`` links embedded as data URIs.

    The Kubeflow UI shows a Markdown artifact as one file, so relative image links would
    break there; embedding keeps the plots visible.

    Args:
        markdown_path: A ``report.md`` written by :func:`build_report` (plots beside it).
    """
    import re

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
