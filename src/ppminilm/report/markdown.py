"""Markdown and HTML tables of the report, every cell escaped (user strings stay inert)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

#: A table as ``(title, header, rows)``, cells already formatted (not escaped).
Table = tuple[str, list[str], list[list[str]]]


def md_escape(text: str) -> str:
    """A user string made inert in Markdown: HTML entities, table pipes and emphasis."""
    escaped = html.escape(str(text), quote=False)
    # Underscores stay: GFM does not emphasise inside words (local_reviews), and escaping
    # them would litter every task name.
    return re.sub(r"([\\|*`\[\]])", r"\\\1", escaped)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(md_escape(c) for c in cells) + " |"

    return "\n".join(
        [line(header), "|" + "|".join("---" for _ in header) + "|", *[line(r) for r in rows]]
    )


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
