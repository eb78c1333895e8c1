"""The HTML gate report: each gate's evidence over the stage, canary against baseline, with the
sequential test's bounds, the plan's target and alert bands, and each verdict.

The history is a replay: the evidence collected once, at "now", cut at earlier instants
(``Evidence.until``) and decided again, so every point is the decision the tool would have made from
what was known then. The page is drawn from ``core.report.decision_as_dict`` of each decision, the
same data ``rollout evaluate --json`` prints; ``gate_report.json`` beside the page holds it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from rollout_policies.core.decision import StageDecision, decide
from rollout_policies.core.measurement import Evidence
from rollout_policies.core.report import decision_as_dict
from rollout_policies.pages import page
from rollout_policies.plan.model import Plan

DEFAULT_POINTS = 24


def replay(
    plan: Plan,
    stage_id: str,
    step: int,
    evidence: Evidence,
    *,
    now: datetime,
    stage_started_at: datetime,
    step_started_at: datetime,
    points: int = DEFAULT_POINTS,
) -> tuple[StageDecision, ...]:
    """The decisions at up to ``points`` instants of the stage, the last one at ``now``.

    The instants are the evidence's own observation times inside the stage (thinned evenly), so a
    metrics file with a single reading gives a single point, and a live history one point per reading.
    """
    seen = {m.observed_at for m in evidence.measurements} | {s.observed_at for s in evidence.samples}
    inside = sorted(t for t in seen if stage_started_at < t < now)
    keep = max(0, points - 1)
    if len(inside) > keep:
        last = len(inside) - 1
        inside = [inside[round(i * last / max(1, keep - 1))] for i in range(keep)] if keep else []
    return tuple(
        decide(
            plan,
            stage_id,
            step,
            evidence.until(moment),
            now=moment,
            stage_started_at=stage_started_at,
            step_started_at=step_started_at,
        )
        for moment in [*sorted(set(inside)), now]
    )


def report_data(decisions: Sequence[StageDecision], *, plan: str, stack: str = "") -> dict[str, Any]:
    """The page's data: each decision as ``evaluate --json`` prints it, oldest first."""
    if not decisions:
        raise ValueError("a gate report needs at least one decision")
    return {"plan": plan, "stack": stack, "decisions": [decision_as_dict(d, plan=plan) for d in decisions]}


def gate_series(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per gate (in the plan's order): its readings, verdicts and comparison evidence over time."""
    series: dict[str, dict[str, Any]] = {}
    for decision in data["decisions"]:
        moment = decision["now"]
        for gate in decision["gates"]:
            key = f"{gate['table']}: {gate['name']}" if gate["table"] else gate["name"]
            row = series.setdefault(
                key,
                {
                    "title": key,
                    "metric": gate["metric"],
                    "unit": gate["unit"],
                    "points": [],
                    "comparison": None,
                },
            )
            row.update(
                target=gate["target"], alert=gate["alert"], verdict=gate["verdict"], reason=gate["reason"]
            )
            evidence = gate.get("comparison")
            settings = gate.get("comparison_settings")
            if settings is not None:
                row["comparison"] = settings
            row["points"].append(
                {
                    "t": moment,
                    "value": gate["value"],
                    "verdict": gate["verdict"],
                    "comparison_verdict": gate.get("comparison_verdict"),
                    "evidence": evidence,
                }
            )
    return list(series.values())


def _moments(points: list[dict[str, Any]]) -> list[datetime]:
    return [datetime.fromisoformat((p.get("t") or p["now"]).replace("Z", "+00:00")) for p in points]


def _times(points: list[dict[str, Any]]) -> list[float]:
    """The points' times as matplotlib's date numbers (what its date axes plot)."""
    from matplotlib.dates import date2num

    return [float(date2num(moment)) for moment in _moments(points)]


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _span(values: Sequence[float]) -> tuple[float, float]:
    """The y range that shows every reading and both thresholds, with a margin."""
    finite = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    low, high = min(finite), max(finite)
    pad = (high - low) * 0.12 or abs(high) * 0.12 or 1.0
    return low - pad, high + pad


def _threshold(text: str | None) -> tuple[str, float] | None:
    if not text:
        return None
    op, _, number = text.partition(" ")
    return op, float(number)


def _value_plot(gate: dict[str, Any]) -> str:
    """The gate's reading over time, coloured by verdict, against the target and alert bands."""
    points = gate["points"]
    times = _times(points)
    values = [_nan(p["value"]) for p in points]
    with page.figure(9.0, 2.6) as (fig, (axes,)):
        axes.plot(times, values, color=page.CANARY, linewidth=1.5, label="candidate", zorder=2)
        axes.scatter(times, values, c=[page.colour(p["verdict"]) for p in points], s=28, zorder=3)
        target, alert = _threshold(gate["target"]), _threshold(gate["alert"])
        for name, limit, tint in (("target", target, "#1a7f37"), ("alert", alert, "#cf222e")):
            if limit is not None:
                axes.axhline(
                    limit[1], color=tint, linestyle="--", linewidth=1, label=f"{name} {limit[0]} {limit[1]:g}"
                )
        low, high = _span([*values, *(limit[1] for limit in (target, alert) if limit is not None)])
        missing = [t for t, v in zip(times, values, strict=True) if math.isnan(v)]
        if missing:  # no reading at these instants (no data, a source error): marked on the floor
            axes.scatter(
                missing, [low] * len(missing), marker="x", color="#8250df", s=24, label="no reading", zorder=3
            )
        if alert is not None:  # the band that rolls back
            if alert[0].startswith("<"):
                axes.axhspan(low, alert[1], color="#cf222e", alpha=0.07, zorder=0)
            else:
                axes.axhspan(alert[1], high, color="#cf222e", alpha=0.07, zorder=0)
        if target is not None:  # the band that meets target
            if target[0].startswith("<"):
                axes.axhspan(low, target[1], color="#1a7f37", alpha=0.07, zorder=0)
            else:
                axes.axhspan(target[1], high, color="#1a7f37", alpha=0.07, zorder=0)
        axes.set_ylim(low, high)
        axes.set_title(f"{gate['title']}: reading and verdict")
        axes.set_ylabel(gate["unit"] or "value")
        axes.legend(loc="upper left", fontsize=8, frameon=False)
        page.time_axis(axes, gate["span"])
        return page.svg(fig)


def _comparison_plot(gate: dict[str, Any]) -> str | None:
    """Canary against baseline: event rates, the ratio inside its anytime-valid bounds, the e-value."""
    settings = gate["comparison"]
    points = [p for p in gate["points"] if p["evidence"] is not None]
    if settings is None or not points:
        return None
    times = _times(points)
    evidence = [p["evidence"] for p in points]

    def rate(events: float, trials: float) -> float:
        return math.nan if not trials else 100.0 * events / trials

    with page.figure(9.0, 2.8, panels=3) as (fig, (rates, ratio, e_value)):
        rates.plot(
            times,
            [rate(e["canary_events"], e["canary_trials"]) for e in evidence],
            color=page.CANARY,
            marker="o",
            markersize=3,
            label="canary",
        )
        rates.plot(
            times,
            [rate(e["baseline_events"], e["baseline_trials"]) for e in evidence],
            color=page.BASELINE,
            marker="o",
            markersize=3,
            label="baseline",
        )
        rates.set_title("canary vs baseline")
        rates.set_ylabel("% of trials" if settings["kind"] == "rate" else "% above baseline quantile")
        rates.legend(fontsize=8, frameon=False)

        estimate = [_nan(e["ratio"]) for e in evidence]
        lower = [_nan(e["ratio_lower"]) for e in evidence]
        finite = [x for x in (*estimate, *lower) if math.isfinite(x)]
        ceiling = max([*finite, 1 + settings["margin"], settings["tolerance"]]) * 1.5
        upper = [ceiling if e["ratio_upper"] is None else e["ratio_upper"] for e in evidence]
        ratio.fill_between(
            times, lower, upper, color=page.CANARY, alpha=0.15, label=f"{1 - settings['alpha']:.0%} bounds"
        )
        ratio.plot(times, estimate, color=page.CANARY, marker="o", markersize=3, label="ratio")
        ratio.axhline(
            settings["tolerance"],
            color="#1a7f37",
            linestyle="--",
            linewidth=1,
            label=f"pass below {settings['tolerance']:g}x",
        )
        ratio.axhline(
            1 + settings["margin"],
            color="#cf222e",
            linestyle="--",
            linewidth=1,
            label=f"regression above {1 + settings['margin']:g}x",
        )
        ratio.set_ylim(0, ceiling)
        ratio.set_title("canary/baseline ratio")
        ratio.legend(fontsize=7, frameon=False)

        e_value.plot(
            times,
            [e["log_e_value"] for e in evidence],
            color="#cf222e",
            marker="o",
            markersize=3,
            label="log e (regression)",
        )
        e_value.plot(
            times,
            [e["log_e_value_clean"] for e in evidence],
            color="#1a7f37",
            marker="o",
            markersize=3,
            label="log e (no regression)",
        )
        e_value.axhline(
            evidence[-1]["log_threshold"], color="#cf222e", linestyle="--", linewidth=1, label="rollback"
        )
        e_value.axhline(
            math.log(1 / settings["alpha"]), color="#1a7f37", linestyle="--", linewidth=1, label="pass"
        )
        e_value.set_title("sequential evidence")
        e_value.legend(fontsize=7, frameon=False)
        for axes in (rates, ratio, e_value):
            page.time_axis(axes, gate["span"])
        return page.svg(fig)


def render(data: dict[str, Any]) -> str:
    """The page for ``report_data``'s data."""
    gates = gate_series(data)
    span = (_moments(data["decisions"][:1])[0], _moments(data["decisions"][-1:])[0])
    for gate in gates:
        gate["span"] = span
        gate["plots"] = [svg for svg in (_value_plot(gate), _comparison_plot(gate)) if svg]
    return page.render("gates.html.j2", data=data, last=data["decisions"][-1], gates=gates)


def write(path: Path, decisions: Sequence[StageDecision], *, plan: str, stack: str = "") -> tuple[Path, Path]:
    """Write the page at ``path`` and its data beside it (``<name>.json``); returns both paths."""
    data = report_data(decisions, plan=plan, stack=stack)
    html = page.write_page(path, render(data))
    data_path = page.write_page(path.with_suffix(".json"), json.dumps(data, indent=1) + "\n")
    return html, data_path
