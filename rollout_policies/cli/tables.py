"""The CLI's tables, drawn with rich: wrapped to the terminal's width, coloured only on a terminal.

rich decides colour the way people expect: none when the output is a pipe or a file, none when
``NO_COLOR`` is set (https://no-color.org), forced with ``FORCE_COLOR``; the width is the terminal's
(``COLUMNS`` when set, 80 for a pipe). rich is imported only when something is drawn, so
`rollout --help` never loads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from rich.console import Console


class Table(NamedTuple):
    """A table as plain data: a header and rows of cells (strings)."""

    header: Sequence[str]
    rows: Sequence[Sequence[str]]


# A cell whose whole text is one of these words is coloured (on a terminal only). Verdicts, decisions,
# statuses: the words the gates, drills and environment use.
STYLES = {
    **dict.fromkeys(
        ("meets_target", "met", "clear", "promote", "passed", "running", "in-sync", "no_regression"), "green"
    ),
    **dict.fromkeys(
        (
            "between",
            "no_data",
            "not_yet_evaluable",
            "unknown",
            "pending_signoff",
            "breaching",
            "hold",
            "continue",
            "skipped",
            "planned",
        ),
        "yellow",
    ),
    **dict.fromkeys(
        (
            "beyond_alert",
            "error",
            "not_met",
            "fired",
            "rollback",
            "regression",
            "failed",
            "STOPPED",
            "MISSED",
            "drift",
        ),
        "bold red",
    ),
}


# The longest word a column keeps whole when the table must shrink to fit the terminal.
WORD_LIMIT = 18


def console() -> Console:
    """A console on this process's stdout as it is now (click's test runner swaps it)."""
    from rich.console import Console

    return Console(highlight=False)


def to_rich(table: Table, width: int) -> object:
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    drawn = RichTable(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, header_style="bold"
    )
    for name, least in zip(table.header, _min_widths(table, width), strict=True):
        drawn.add_column(name, overflow="fold", min_width=least)
    for row in table.rows:
        drawn.add_row(*(Text(cell, style=STYLES.get(cell.strip(), "")) for cell in row))
    return drawn


def _min_widths(table: Table, width: int) -> list[int | None]:
    """Each column's least width: its longest word (up to WORD_LIMIT), so text wraps between words.
    When those do not fit the width, rich shares the width out alone: words split, nothing is cut off."""
    columns = [
        [word for row in (table.header, *table.rows) for word in row[i].split()]
        for i in range(len(table.header))
    ]
    least = [min(max(map(len, words), default=1), WORD_LIMIT) for words in columns]
    # each column's padding, one space either side of the gap between two columns
    if sum(least) + 2 * len(least) > width:
        return [None] * len(least)
    return list(least)


def echo(blocks: Iterable[str | Table], *, clear: bool = False) -> None:
    """Print lines of text and tables in order; text as it is (no markup), tables fitted to the width."""
    out = console()
    if clear and out.is_terminal:  # a refreshing view redraws in place; a pipe gets each one after another
        out.clear()
    for block in blocks:
        if isinstance(block, Table):
            out.print(to_rich(block, out.width))
        else:
            # Text is not cut into lines: the terminal wraps it, and a pipe keeps each line whole.
            out.print(block, markup=False, emoji=False, soft_wrap=True)
