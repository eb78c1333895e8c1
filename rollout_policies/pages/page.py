"""The shared part of every HTML report: jinja2 templates, the page shell, and plots as inline SVG.

Plots are drawn with matplotlib's SVG backend (text kept as text, ids salted so the same data gives
the same file) and inlined in the page, so a report is one file with no scripts or styles from
elsewhere. The only script on a page writes script errors into the page, where a headless browser's
DOM shows them (the tests read it), and counts the plots it finds.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

TEMPLATES = Path(__file__).parent / "templates"

# One colour per verdict, shared by tables and plots (gate verdicts and drill statuses).
COLOURS = {
    "meets_target": "#1a7f37",
    "passed": "#1a7f37",
    "met": "#1a7f37",
    "promote": "#1a7f37",
    "between": "#bf8700",
    "hold": "#bf8700",
    "planned": "#6e7781",
    "skipped": "#6e7781",
    "dry-run": "#6e7781",
    "monitor": "#6e7781",
    "not_yet_evaluable": "#6e7781",
    "no_data": "#8250df",
    "inconclusive": "#8250df",
    "error": "#cf222e",
    "beyond_alert": "#cf222e",
    "failed": "#cf222e",
    "missed": "#cf222e",
    "rollback": "#cf222e",
}
CANARY, BASELINE = "#0969da", "#6e7781"

_SVG_START = re.compile(r"^.*?(?=<svg)", re.S)


def colour(status: str) -> str:
    return COLOURS.get(status.lower(), "#57606a")


def render(template: str, *, search: Sequence[Path] = (), **context: Any) -> str:
    """Render a template that extends ``base.html.j2`` to a page: one of this package's, or one
    from the ``search`` folders (looked in first; the rehearsal's report keeps its template there)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    environment = Environment(
        loader=FileSystemLoader([*search, TEMPLATES]),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,  # a renamed field is an error here, not a blank cell in a report
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["colour"] = colour
    return environment.get_template(template).render(**context)


def write_page(path: Path, html: str) -> Path:
    """Write a page whole or not at all (through a temporary name beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    try:
        temp.write_text(html, encoding="utf-8")
        temp.replace(path)
    finally:
        temp.unlink(missing_ok=True)
    return path


@contextmanager
def figure(
    width: float = 9.0, height: float = 3.0, *, panels: int = 1
) -> Iterator[tuple[Figure, list[Axes]]]:
    """A matplotlib figure with ``panels`` axes side by side, styled alike for every report.

    Uses ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no GUI backend.
    """
    import matplotlib
    from matplotlib.figure import Figure

    style: dict[str, Any] = {
        "svg.fonttype": "none",  # text stays text: smaller, searchable, selectable
        "svg.hashsalt": "markethub-rollout",  # stable element ids: the same data, the same file
        "font.family": "sans-serif",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.color": "#e5e5e5",
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
    }
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = [fig.add_subplot(1, panels, index + 1) for index in range(panels)]
        yield fig, axes


def svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element to inline in a page (no XML prolog or DOCTYPE)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "markethub-rollout"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return _SVG_START.sub("", buffer.getvalue(), count=1).strip()


def time_axis(axes: Axes, span: tuple[datetime, datetime]) -> None:
    """Dates on the x axis, concise, over the report's whole span (so every plot lines up)."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num

    locator = AutoDateLocator(maxticks=7)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    start, end = span
    if start == end:  # one point: a little room either side
        start, end = start - timedelta(minutes=30), end + timedelta(minutes=30)
    pad = (end - start) * 0.03
    axes.set_xlim(float(date2num(start - pad)), float(date2num(end + pad)))
