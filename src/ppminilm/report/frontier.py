"""The compression search in the report: each task's frontier table, its notes and plot data.

One table per task lists every candidate the search weighed (the fine-tuned FP32 model, and
per width its FP32 and INT8 sub-models): size, dev accuracy and its drop in points below the
FP32 model, test accuracy where the task has a labelled test split (reported, never used to
select), the interleaved timing (median seconds per dev pass and the fastest to slowest
round), whether it is within the budget, tied with the fastest, and which one was chosen.
"""

from __future__ import annotations

from collections.abc import Mapping

from ppminilm.contracts import SearchCandidate, SearchSelection
from ppminilm.modeling.accounting import format_count
from ppminilm.report.markdown import Table, md_escape, md_table


def _pct(value: float | None) -> str:
    return "n/m" if value is None else f"{value * 100:.2f}"


def _drop(c: SearchCandidate) -> str:
    return "0.00" if c.drop_points == 0 else f"{-c.drop_points:+.2f}"


def _chosen(c: SearchCandidate) -> str:
    if c.chosen:
        return "CHOSEN"
    return "tie" if c.tied_fastest else ""


def frontier_table(sel: SearchSelection, seq_len: int | None = None) -> Table:
    """The task's frontier as ``(title, header, rows)`` (formatted, not escaped).

    Args:
        sel: The task's selection.
        seq_len: The sequence length the FLOPs are counted at, for the header.
    """
    tested = any(c.test_acc is not None for c in sel.candidates)
    header = [
        "Candidate",
        "Engine",
        "#Params",
        f"#FLOPs (seq {seq_len})" if seq_len else "#FLOPs",
        "Dev acc",
        "Δ vs FP32 (points)",
        *(["Test acc"] if tested else []),
        "s / dev pass",
        "Rounds (s)",
        "Speedup",
        "Within budget",
        "Chosen",
    ]
    rows = [
        [
            c.key + (" (FP32 reference)" if c.key == sel.reference else ""),
            c.engine,
            format_count(c.params, "M"),
            format_count(c.flops, "B"),
            _pct(c.dev_acc),
            _drop(c),
            *([_pct(c.test_acc)] if tested else []),
            f"{c.seconds_per_pass:.3f}",
            f"{c.fastest_s:.3f}-{c.slowest_s:.3f}",
            "-" if c.speedup is None else f"{c.speedup:.2f}x",
            "yes" if c.within_budget else "no",
            _chosen(c),
        ]
        for c in sel.candidates
    ]
    title = f"Compression search: {sel.task} (budget {sel.budget_points:g} points)"
    return title, header, rows


def frontier_notes(sel: SearchSelection) -> list[str]:
    """The sentences under a task's frontier table (plain text, not escaped)."""
    out = [f"Chosen: {sel.chosen}. {sel.reason}"]
    out.append(
        f"Rule: {sel.rule}. Accuracy is {sel.select_split} accuracy; Δ is in points of "
        f"accuracy against the FP32 reference ({sel.reference_dev_acc * 100:.2f}%)."
    )
    if sel.report_split:
        out.append(
            f"{sel.report_split.capitalize()} accuracy: the labelled {sel.report_split} split, "
            "scored once at the end; no selection saw it."
        )
    out.append(
        "Speed: all candidates timed in one step, interleaved round by round (median seconds "
        "per dev pass; Rounds = fastest to slowest round); tie = within budget and as fast as "
        "the fastest such candidate within the measured spread (the median of their per-round "
        "time ratios is within 1 ± half the ratios' range)."
    )
    return out


def search_summary_notes(searches: Mapping[str, SearchSelection]) -> list[str]:
    """One sentence for the notes under the summary table: what each task kept."""
    if not searches:
        return []
    kept = "; ".join(
        f"{task}: {sel.chosen}" + (" (FP32 kept: nothing within budget)" if sel.fallback else "")
        for task, sel in searches.items()
    )
    budgets = sorted({sel.budget_points for sel in searches.values()})
    budget = " / ".join(f"{b:g}" for b in budgets)
    return [
        f"Compression search (budget {budget} points of dev accuracy below the fine-tuned "
        f"FP32 model): kept {kept}. Frontier tables below."
    ]


def frontier_markdown(sel: SearchSelection, seq_len: int | None = None) -> str:
    """A task's frontier as one Markdown document (the select step's artifact in the UI)."""
    title, header, rows = frontier_table(sel, seq_len)
    lines = [f"# {md_escape(title)}", "", md_table(header, rows), ""]
    lines += [f"- {md_escape(n)}" for n in frontier_notes(sel)]
    return "\n".join(lines) + "\n"


__all__ = ["frontier_markdown", "frontier_notes", "frontier_table", "search_summary_notes"]
