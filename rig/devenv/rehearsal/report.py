"""The rehearsal's report: ``report.json`` (the data) and ``report.html`` (one self-contained page).

The page is rendered from ``report.html.j2`` with jinja2; the plots are plotly figures with
plotly.js inlined once, so the file opens anywhere without a network.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

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
    import plotly.graph_objects as go

    week = data["scales"]["week_seconds"] or 1
    figures: dict[str, str] = {}
    weights = go.Figure()
    for stack in sorted({w["stack"] for w in data["weights"]}):
        rows = [w for w in data["weights"] if w["stack"] == stack]
        x = [w["t"] / week for w in rows]
        weights.add_trace(
            go.Scatter(
                x=x, y=[w["live"] for w in rows], mode="lines", name=f"{stack} live", line={"shape": "hv"}
            )
        )
        weights.add_trace(
            go.Scatter(
                x=x,
                y=[w["git"] for w in rows],
                mode="lines",
                name=f"{stack} git",
                line={"shape": "hv", "dash": "dot"},
            )
        )
    for fault in data["faults"]:
        if fault["injected_at"] is not None:
            weights.add_vline(
                x=fault["injected_at"] / week,
                line_dash="dash",
                line_color="red",
                annotation_text=fault["kind"],
            )
    weights.update_layout(
        title="Candidate weight per region (live HTTPRoute vs git)",
        xaxis_title="calendar week",
        yaxis_title="% to candidate",
        height=420,
    )
    figures["weights"] = weights.to_html(full_html=False, include_plotlyjs=False, div_id="plot-weights")
    for index, series in enumerate(data["evidence"]):
        figure = go.Figure()
        for track, points in series["tracks"].items():
            figure.add_trace(
                go.Scatter(
                    x=[p[0] / week for p in points], y=[p[1] for p in points], mode="lines", name=track
                )
            )
        for name, value in (("target", series.get("target")), ("alert", series.get("alert"))):
            if value is not None:
                figure.add_hline(y=value, line_dash="dot", annotation_text=f"{name} {value:g}")
        for bound in series.get("bounds", []):
            figure.add_trace(
                go.Scatter(
                    x=[p[0] / week for p in bound["points"]],
                    y=[p[1] for p in bound["points"]],
                    mode="lines",
                    name=bound["name"],
                    line={"dash": "dash"},
                )
            )
        figure.update_layout(
            title=series["title"], xaxis_title="calendar week", yaxis_title=series["unit"], height=340
        )
        figures[f"evidence-{index}"] = figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"plot-evidence-{index}"
        )
    return figures


def write_report(record: Any, plan: Plan, report_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into ``report_dir``; returns their paths."""
    from plotly.offline import get_plotlyjs

    data = report_data(record, plan)
    json_path = report_dir / "report.json"
    json_path.write_text(json.dumps(data, indent=1, default=_plain) + "\n")
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    html = environment.get_template(TEMPLATE).render(
        data=data, figures=_figures(data), plotlyjs=get_plotlyjs()
    )
    html_path = report_dir / "report.html"
    html_path.write_text(html)
    return html_path, json_path


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)
