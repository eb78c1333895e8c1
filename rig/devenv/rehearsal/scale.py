"""The plan at the rehearsal's two time scales: calendar durations divided by one, fault responses by another.

A rehearsal cannot wait ten weeks, and a rollback due within a minute cannot be compressed a
thousandfold (a rule interval, a scrape, the webhook and the apply take seconds whatever the plan
says). So the plan the rehearsal's repository holds is the team's plan with:

- calendar durations divided by ``calendar`` (``--scale``): step bakes, minimum stage durations,
  criteria windows, cohort ages (``evaluable_after``), the analytics queries' day and week windows
  and the freshness (``max_age``) of analytics data;
- fault responses divided by ``response`` (a small number, printed beside the first): trigger
  windows, rollback objectives and the crash reporter's counting window.

Everything else stays: thresholds, gates, stages, features. The edit is round-trip (comments and
order survive), so ``git diff`` of the rehearsal's plan commit shows exactly these durations.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ruamel.yaml import YAML

from rollout_policies.plan.model import parse_duration

_INTERVAL = re.compile(r"interval '(\d+(?:\.\d+)?) (second|minute|hour|day|week)s?'")
_ELAPSED = re.compile(r"extract\(epoch FROM ([a-z_]+) - ([a-z_]+)\)", re.IGNORECASE)
_WINDOW = re.compile(r"([?&]window=)(\d+(?:\.\d+)?[smhdw])")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
# Providers whose freshness is calendar time: rows written by analytics jobs (scaled like the data).
_CALENDAR_SOURCES = frozenset({"sql", "manual"})


@dataclass(frozen=True)
class Scales:
    """The two divisors: ``calendar`` for plan time, ``response`` for fault responses (>= 1 each)."""

    calendar: float
    response: float = 1.0
    # Comparison gates need per-version counts that accrue at real time: a stage compressed to
    # minutes never gathers enough to conclude "no regression", so they hold for ever. Off, the
    # rehearsal judges those gates by their thresholds and the report says the comparisons were
    # not rehearsed (docs/rehearsal.md).
    comparisons: bool = False

    def __post_init__(self) -> None:
        for name in ("calendar", "response"):
            value = getattr(self, name)
            if not value >= 1:
                raise ValueError(f"--scale: the {name} scale must be at least 1, not {value:g}")

    def calendar_seconds(self, duration: timedelta) -> float:
        return duration.total_seconds() / self.calendar

    def response_seconds(self, duration: timedelta) -> float:
        return duration.total_seconds() / self.response


def seconds_text(seconds: float) -> str:
    """A duration the plan loader reads back: whole seconds when whole, else milliseconds precision."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _scaled(value: Any, divisor: float) -> str:
    return seconds_text(parse_duration(value).total_seconds() / divisor)


def scale_sql(query: str, divisor: float) -> str:
    """``interval '7 days'`` -> ``interval '60 seconds'`` (at divisor 10080), for every interval literal."""

    def replace(match: re.Match[str]) -> str:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] / divisor
        return f"interval '{seconds_text(seconds)[:-1]} seconds'"

    scaled = _INTERVAL.sub(replace, query)
    # Durations read off scaled timestamps (a session's length) are scaled back to calendar time.
    return _ELAPSED.sub(lambda m: f"({m.group(0)} * {divisor:g})", scaled)


def scale_plan_text(text: str, scales: Scales) -> str:
    """The plan file's text with its durations divided as the module docstring says."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    document = yaml.load(text)
    calendar, response = scales.calendar, scales.response
    for stage in document.get("stages", []) or []:
        for step in stage.get("steps", []) or []:
            if "bake" in step:
                step["bake"] = _scaled(step["bake"], calendar)
        if "min_duration" in stage:
            stage["min_duration"] = _scaled(stage["min_duration"], calendar)
        if "rollback_objective" in stage:
            stage["rollback_objective"] = _scaled(stage["rollback_objective"], response)
        for criterion in [*(stage.get("go") or []), *(stage.get("no_go") or [])]:
            if "window" in criterion:
                criterion["window"] = _scaled(criterion["window"], calendar)
    for metric in document.get("metrics", []) or []:
        if "evaluable_after" in metric:
            metric["evaluable_after"] = _scaled(metric["evaluable_after"], calendar)
        source = metric.get("source") or {}
        provider = source.get("provider")
        if "max_age" in source and provider in _CALENDAR_SOURCES:
            source["max_age"] = _scaled(source["max_age"], calendar)
        query = source.get("query")
        if isinstance(query, str):
            if provider == "sql":
                source["query"] = type(query)(scale_sql(query, calendar))
            elif provider == "json_http" and _WINDOW.search(query):
                source["query"] = _WINDOW.sub(lambda m: m.group(1) + _scaled(m.group(2), response), query)
    if not scales.comparisons:
        for table in document.get("tables", []) or []:
            for gate in table.get("gates", []) or []:
                if "comparison" in gate:
                    del gate["comparison"]
    for trigger in document.get("triggers", []) or []:
        if "window" in trigger:
            trigger["window"] = _scaled(trigger["window"], response)
    out = io.StringIO()
    yaml.dump(document, out)
    header = (
        f"# REHEARSAL COPY: calendar durations divided by {calendar:g}, fault responses by {response:g}"
        f"{'' if scales.comparisons else '; comparison gates judged by thresholds only'}\n"
        "# (rig/devenv/rehearsal/scale.py). The team's plan is the unscaled file in the product.\n"
    )
    return header + out.getvalue()
