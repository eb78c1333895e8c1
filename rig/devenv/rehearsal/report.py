"""The rehearsal's report: ``report.json`` (the data) and ``report.html`` (one self-contained page).

The page is rendered from ``report.html.j2`` through the product's report pages
(``rollout_policies.pages.page``: the same page shell, colours and inline SVG plots as the gate and
drill reports), so the file opens anywhere without a network.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from rollout_policies.pages import page
from rollout_policies.plan.model import Plan

TEMPLATE = "report.html.j2"


def report_data(record: Any, plan: Plan) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data."""
    scales = record.scales
    events = [asdict(e) for e in record.events]
    return {
        "verdict": record.verdict,
        "failures": list(record.failures),
        "started_at": record.started_at.isoformat(),
        "wall_seconds": round(record.wall_seconds, 1),
        "load_average": _load(),
        "scales": {
            "calendar": scales.calendar,
            "response": scales.response,
            "comparisons": scales.comparisons,
            "week_seconds": round(7 * 86400 / scales.calendar, 2),
            "promotion_interval_seconds": record.interval,
            "promotion_interval_calendar_hours": round(record.interval * scales.calendar / 3600, 2),
            "workflow_cron_seconds": record.cron_interval,
        },
        "plan": plan.name,
        "events": events,
        "decisions": [e for e in events if e["kind"] in ("merge", "rollback", "resume", "up", "promote-run")],
        "weights": list(record.weights),
        "evidence": list(record.evidence),
        "faults": [f.as_dict() for f in record.faults],
        "checks": [{k: v for k, v in c.items() if k != "live"} for c in record.checks],
        "timeline": list(record.stages.get("timeline", [])),
        "budgets": list(record.stages.get("budgets", [])),
        "drills": list(record.drills),
    }


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _figures(data: dict[str, Any]) -> dict[str, str]:
    week = data["scales"]["week_seconds"] or 1
    figures: dict[str, str] = {}
    with page.figure(10.0, 3.8) as (fig, (axes,)):
        for stack in sorted({w["stack"] for w in data["weights"]}):
            rows = [w for w in data["weights"] if w["stack"] == stack]
            x = [w["t"] / week for w in rows]
            (live,) = axes.step(x, [w["live"] for w in rows], where="post", label=f"{stack} live")
            axes.step(x, [w["git"] for w in rows], where="post", linestyle=":", color=live.get_color(),
                      label=f"{stack} git")  # fmt: skip
        for fault in data["faults"]:
            if fault["injected_at"] is not None:
                at = fault["injected_at"] / week
                axes.axvline(at, color="#cf222e", linestyle="--", linewidth=1)
                axes.annotate(f" {fault['kind']}", (at, 95), color="#cf222e", fontsize=8)
        axes.set_title("Candidate weight per region (live HTTPRoute vs git)")
        axes.set_xlabel("calendar week")
        axes.set_ylabel("% to candidate")
        axes.set_ylim(-3, 103)
        axes.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figures["weights"] = page.svg(fig)
    for index, series in enumerate(data["evidence"]):
        with page.figure(10.0, 3.0) as (fig, (axes,)):
            for track, points in series["tracks"].items():
                axes.plot([p[0] / week for p in points], [p[1] for p in points], label=track)
            for name, value, tint in (("target", series.get("target"), "#1a7f37"),
                                      ("alert", series.get("alert"), "#cf222e")):  # fmt: skip
                if value is not None:
                    axes.axhline(value, color=tint, linestyle=":", linewidth=1, label=f"{name} {value:g}")
            for bound in series.get("bounds", []):
                axes.plot([p[0] / week for p in bound["points"]], [p[1] for p in bound["points"]],
                          linestyle="--", label=bound["name"])  # fmt: skip
            axes.set_title(series["title"])
            axes.set_xlabel("calendar week")
            axes.set_ylabel(series["unit"])
            axes.legend(fontsize=8, frameon=False)
            figures[f"evidence-{index}"] = page.svg(fig)
    return figures


def write_report(record: Any, plan: Plan, report_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``report_dir``; returns their paths."""
    data = report_data(record, plan)
    json_path = report_dir / "report.json"
    json_path.write_text(json.dumps(data, indent=1, default=_plain) + "\n")
    templates = [Path(__file__).parent / "templates"]
    html = page.render(TEMPLATE, search=templates, data=data, figures=_figures(data))
    html_path = report_dir / "report.html"
    html_path.write_text(html)
    return html_path, json_path


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)
