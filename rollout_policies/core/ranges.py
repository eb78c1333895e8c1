"""Measurements judged by meaning: a reading its unit cannot take is an error, and at a tie the worse wins.

A crash rate of -5 %, a count of -100 bugs or a success rate of 250 % is not a good or a bad value: it
says the source is broken. Such a reading becomes a measurement with phase ``error``, so the gate
holds (never promotes, never rolls back on it) and its reason says why. Two readings of one metric
at the same instant cannot both be true; the worse one (by the metric's direction) is kept, so file
order or provider order can never pick the kinder one. Every evaluation entry point of the core
(``decide``, ``evaluate_triggers``) applies this, whichever source the measurements came from:
a metrics file, a live provider, or ``rollout watch``. The valid ranges per unit are the plan's
(``plan.model.unit_range``, docs/providers.md "Valid ranges").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from rollout_policies.core.measurement import Evidence, Measurement, Phase
from rollout_policies.plan.model import Direction, Metric

# Worst first: an error outranks no data, which outranks a value.
_PHASE_RANK = {Phase.ERROR: 0, Phase.NO_DATA: 1, Phase.OK: 2}


def out_of_range(measurement: Measurement, metric: Metric) -> str | None:
    """Why an ``ok`` reading is impossible for its metric, or None when it is possible."""
    if measurement.phase is not Phase.OK or measurement.value is None:
        return None
    if metric.valid_range.holds(measurement.value):
        return None
    unit = f" {metric.unit}" if metric.unit else ""
    return f"{measurement.value:g}{unit} is out of range: {metric.id} is always {metric.range_text}"


def within_range(measurement: Measurement, metric: Metric) -> Measurement:
    """The measurement, or an ``error`` measurement saying why its value is impossible."""
    problem = out_of_range(measurement, metric)
    if problem is None:
        return measurement
    if measurement.message:
        problem = f"{problem}; the source said: {measurement.message}"
    return Measurement.error(measurement.metric, measurement.observed_at, problem)


def worst_of(group: Iterable[Measurement], metric: Metric | None) -> Measurement:
    """Of measurements of one metric at one instant, the worse: error, then no data, then the value
    on the bad side of the metric's direction. Values with no direction to order them are an error."""
    items = list(group)
    if len(items) == 1:
        return items[0]
    rank = min(_PHASE_RANK[m.phase] for m in items)
    worst = [m for m in items if _PHASE_RANK[m.phase] == rank]
    values = sorted({m.value for m in worst if m.value is not None})
    at = items[0].observed_at
    if len(values) <= 1:
        return worst[0]  # the same value twice, or errors / no data: nothing to choose between
    if metric is None or metric.direction is None:
        shown = ", ".join(f"{v:g}" for v in values)
        return Measurement.error(
            items[0].metric,
            at,
            f"{len(items)} measurements at {_iso(at)} disagree ({shown}) and the metric has no direction "
            "to say which is worse",
        )
    pick = max if metric.direction is Direction.LOWER_IS_BETTER else min
    chosen = pick(worst, key=lambda m: m.value if m.value is not None else 0.0)
    shown = ", ".join(f"{v:g}" for v in values)
    note = f"the worse of {len(items)} measurements at {_iso(at)} ({shown})"
    return replace(chosen, message=f"{chosen.message}; {note}" if chosen.message else note)


def judged(evidence: Evidence, metrics: Mapping[str, Metric]) -> Evidence:
    """The evidence with impossible readings turned into errors and timestamp ties settled.

    Idempotent: judging judged evidence changes nothing. Measurements of metrics the plan does not
    define pass through untouched (the callers reject those earlier, with the file and field).
    """
    groups: dict[tuple[str, datetime], list[Measurement]] = {}
    for m in evidence.measurements:
        metric = metrics.get(m.metric)
        groups.setdefault((m.metric, m.observed_at), []).append(
            within_range(m, metric) if metric is not None else m
        )
    settled = tuple(worst_of(group, metrics.get(metric_id)) for (metric_id, _), group in groups.items())
    if settled == evidence.measurements:
        return evidence
    return replace(evidence, measurements=settled)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
