"""Per-gate verdicts: one metric's newest measurement judged against a gate's target and alert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rollout_policies.core.durations import span
from rollout_policies.core.measurement import Evidence, Measurement, Phase, require_aware
from rollout_policies.plan.model import Gate, Metric, Stage, Threshold, format_duration


class Verdict(StrEnum):
    MEETS_TARGET = "meets_target"
    BETWEEN = "between"  # target missed, alert not crossed
    BEYOND_ALERT = "beyond_alert"
    NO_DATA = "no_data"  # no measurement, an empty answer, or older than the source's max_age
    ERROR = "error"  # the source failed or could not be reached
    NOT_YET_EVALUABLE = "not_yet_evaluable"  # the metric's evaluable_after has not passed in the stage
    MONITOR = "monitor"  # monitor-only: reported, never decides


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """A gate's verdict with everything a reader needs to check it."""

    table: str
    metric: str
    name: str
    verdict: Verdict
    value: float | None
    target: Threshold | None
    alert: Threshold | None
    unit: str
    reason: str
    observed_at: datetime | None = None

    @property
    def gating(self) -> bool:
        """Whether this verdict takes part in the decision (monitor-only rows never do)."""
        return self.verdict is not Verdict.MONITOR


def _show(value: float, unit: str) -> str:
    return f"{value:g}{unit}" if unit in ("%", "s", "ms", "MB") else f"{value:g} {unit}".rstrip()


def evaluate_gate(
    gate: Gate,
    metric: Metric,
    measurement: Measurement | None,
    *,
    now: datetime,
    stage_started_at: datetime,
    table: str = "",
) -> GateVerdict:
    """Judge one gate. Order matters: monitor-only, then evaluability, then the data, then thresholds."""
    require_aware(now, "now")
    require_aware(stage_started_at, "stage_started_at")

    def verdict(kind: Verdict, reason: str, value: float | None = None) -> GateVerdict:
        return GateVerdict(
            table=table,
            metric=metric.id,
            name=metric.name,
            verdict=kind,
            value=value,
            target=gate.target,
            alert=gate.alert,
            unit=metric.unit,
            reason=reason,
            observed_at=measurement.observed_at if measurement is not None else None,
        )

    ok_value = measurement.value if measurement is not None and measurement.phase is Phase.OK else None

    if gate.monitor_only or (gate.target is None and gate.alert is None):
        what = gate.note or "no thresholds"
        shown = "no data" if ok_value is None else _show(ok_value, metric.unit)
        return verdict(Verdict.MONITOR, f"monitor only ({what}): {shown}", ok_value)

    in_stage = now - stage_started_at
    if in_stage < metric.evaluable_after:
        return verdict(
            Verdict.NOT_YET_EVALUABLE,
            f"evaluable {format_duration(metric.evaluable_after)} into the stage; {span(in_stage)} so far",
        )
    if measurement is None:
        return verdict(Verdict.NO_DATA, f"no measurement of {metric.id}")
    if measurement.phase is Phase.ERROR:
        return verdict(Verdict.ERROR, f"source error: {measurement.message or 'unknown error'}")
    if measurement.phase is Phase.NO_DATA:
        return verdict(Verdict.NO_DATA, f"source returned no data{_suffix(measurement.message)}")
    if measurement.observed_at > now:
        return verdict(
            Verdict.ERROR,
            f"observed at {_iso(measurement.observed_at)}, after now ({_iso(now)}): clocks disagree",
        )
    age = now - measurement.observed_at
    if age > metric.source.max_age:
        return verdict(
            Verdict.NO_DATA,
            f"stale: observed {span(age)} ago, max age {format_duration(metric.source.max_age)}",
        )

    assert ok_value is not None  # phase ok always carries a value (Measurement checks it)
    shown = _show(ok_value, metric.unit)
    if gate.target is not None and gate.target.holds(ok_value):
        return verdict(Verdict.MEETS_TARGET, f"{shown} meets target {gate.target}", ok_value)
    if gate.alert is not None and gate.alert.holds(ok_value):
        return verdict(Verdict.BEYOND_ALERT, f"{shown} crosses alert {gate.alert}", ok_value)
    if gate.target is None:
        # Only an alert bound: staying on the right side of it is all the plan asks.
        return verdict(Verdict.MEETS_TARGET, f"{shown} within alert {gate.alert}", ok_value)
    alert_text = f", alert {gate.alert} not crossed" if gate.alert is not None else ""
    return verdict(Verdict.BETWEEN, f"{shown} misses target {gate.target}{alert_text}", ok_value)


def evaluate_stage_gates(
    stage: Stage,
    metrics: dict[str, Metric],
    evidence: Evidence,
    *,
    now: datetime,
    stage_started_at: datetime,
) -> tuple[GateVerdict, ...]:
    """Every gate of every table of a stage, in plan order."""
    newest = evidence.latest_by_metric()
    return tuple(
        evaluate_gate(
            gate,
            metrics[gate.metric],
            newest.get(gate.metric),
            now=now,
            stage_started_at=stage_started_at,
            table=table.name,
        )
        for table in stage.tables
        for gate in table.gates
    )


def _suffix(message: str) -> str:
    return f": {message}" if message else ""


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
