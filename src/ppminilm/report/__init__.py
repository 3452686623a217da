"""The run report: the run summary from benchmark results, tables, plots, Markdown and HTML.

* :mod:`.summary` -- the run summary built from every task's benchmark results.
* :mod:`.schema` -- its validation (``ReportError`` naming the field).
* :mod:`.render` -- tables, Markdown, self-contained HTML, ``metrics.json``.
* :mod:`.plots` -- matplotlib figures.

Importing this package imports no paddle.
"""

from ppminilm.report.render import build_report, run_report
from ppminilm.report.schema import ReportError, validate_summary
from ppminilm.report.summary import run_summary_from_results

__all__ = [
    "ReportError",
    "build_report",
    "run_report",
    "run_summary_from_results",
    "validate_summary",
]
