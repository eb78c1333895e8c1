"""The HTML drill report: the measured RTO/RPO against the plan's objectives, and the steps on a timeline.

It draws a ``runbooks.report.DrillReport`` (the same record the drill's JSON and Markdown files hold)
and is written beside them as ``<stamp>.html``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout_policies.pages import page

if TYPE_CHECKING:
    from runbooks.report import DrillReport


def _met(objective: dict[str, Any]) -> str:
    return {True: "met", False: "missed", None: "not measured"}[objective["met"]]


def _scale(seconds: float) -> tuple[float, str]:
    """A unit that keeps the numbers on an axis readable."""
    if seconds >= 7200:
        return 3600.0, "h"
    if seconds >= 180:
        return 60.0, "min"
    return 1.0, "s"


def _objectives_plot(objectives: list[dict[str, Any]]) -> str | None:
    """Each objective: the measured time as a bar, the plan's limit as a line across it."""
    if not objectives:
        return None
    largest = max(max(o["limit_seconds"], o["measured_seconds"] or 0.0) for o in objectives)
    unit, label = _scale(largest)
    with page.figure(9.0, 0.7 + 0.55 * len(objectives)) as (fig, (axes,)):
        rows = list(range(len(objectives)))[::-1]
        for row, objective in zip(rows, objectives, strict=True):
            measured = objective["measured_seconds"]
            status = _met(objective)
            if measured is not None:
                axes.barh(row, measured / unit, height=0.5, color=page.colour(status))
                axes.annotate(
                    f" {measured / unit:.3g} {label} ({status})",
                    (measured / unit, row),
                    va="center",
                    fontsize=8,
                )
            else:
                axes.annotate(" not measured", (0, row), va="center", fontsize=8, color="#8250df")
            limit = objective["limit_seconds"] / unit
            axes.plot([limit, limit], [row - 0.35, row + 0.35], color="#1f2328", linewidth=2)
            axes.annotate(f" limit {limit:.3g} {label}", (limit, row + 0.25), fontsize=7, ha="left")
        axes.set_yticks(rows, [o["name"] for o in objectives])
        axes.set_xlim(0, largest / unit * 1.35)
        axes.set_xlabel(label)
        axes.set_title("Objectives: measured against the plan")
        axes.grid(axis="y", visible=False)
        return page.svg(fig)


def _steps_plot(data: dict[str, Any]) -> str | None:
    """The steps as bars on the drill's clock: when each started, how long it took, how it ended."""
    steps = data["steps"]
    if not steps:
        return None
    start = _when(data["started_at"])
    offsets = [(_when(s["started_at"]) - start).total_seconds() for s in steps]
    unit, label = _scale(max(o + s["seconds"] for o, s in zip(offsets, steps, strict=True)) or 1.0)
    with page.figure(9.0, 0.8 + 0.32 * len(steps)) as (fig, (axes,)):
        rows = list(range(len(steps)))[::-1]
        for row, offset, step in zip(rows, offsets, steps, strict=True):
            width = max(step["seconds"] / unit, 0.0)
            axes.barh(row, width, left=offset / unit, height=0.6, color=page.colour(step["status"]))
            axes.annotate(
                f" {step['status']}", (offset / unit + width, row), va="center", fontsize=7, color="#57606a"
            )
        axes.set_yticks(rows, [s["name"] for s in steps])
        axes.set_xlabel(f"{label} since the drill started")
        axes.set_title("Steps")
        axes.grid(axis="y", visible=False)
        axes.margins(x=0.15)
        return page.svg(fig)


def _when(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def render(report: DrillReport) -> str:
    data = json.loads(report.to_json())
    for objective in data["objectives"]:
        objective["status"] = _met(objective)
    plots = [svg for svg in (_objectives_plot(data["objectives"]), _steps_plot(data)) if svg]
    return page.render("drill.html.j2", data=data, plots=plots)


def write(report: DrillReport, path: Path) -> Path:
    """Write the page at ``path`` (whole or not at all)."""
    return page.write_page(path, render(report))
