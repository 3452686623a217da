"""The run report: the run summary from benchmark results, tables, plots, Markdown and HTML.

* :mod:`.summary` -- the run summary built from every task's results.
* :mod:`.schema` -- the run summary as typed records (``ReportError`` naming the field).
* :mod:`.render` -- tables, notes, Markdown, self-contained HTML, ``report.json``.
* :mod:`.frontier` -- the compression search's frontier table and notes per task.
* :mod:`.markdown` -- escaped Markdown/HTML tables.
* :mod:`.plots` -- matplotlib figures.

Importing this package imports no paddle.
"""

from ppminilm.report.frontier import frontier_markdown
from ppminilm.report.render import build_report, run_report
from ppminilm.report.schema import ReportError, RunSummary, validate_summary
from ppminilm.report.summary import run_summary_from_results

__all__ = [
    "ReportError",
    "RunSummary",
    "build_report",
    "frontier_markdown",
    "run_report",
    "run_summary_from_results",
    "validate_summary",
]
