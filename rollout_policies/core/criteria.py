"""Go/no-go criteria: judged from gate verdicts, clean windows, counts, or a person's sign-off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from rollout_policies.core.durations import span
from rollout_policies.core.gates import GateVerdict, Verdict
from rollout_policies.core.measurement import Evidence, Measurement, Phase, require_aware
from rollout_policies.plan.model import Criterion, CriterionKind, Metric, format_duration


class CriterionStatus(StrEnum):
    """Whether a criterion's condition holds. For a go criterion MET is good; for a no-go one, bad."""

    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"  # the data to judge it is missing, stale, failed or not yet evaluable
    PENDING_SIGNOFF = "pending_signoff"  # a manual criterion nobody has signed off yet


@dataclass(frozen=True, slots=True)
class CriterionResult:
    id: str
    text: str
    kind: CriterionKind
    no_go: bool
    status: CriterionStatus
    reason: str
    owners: tuple[str, ...] = ()


def evaluate_criterion(
    criterion: Criterion,
    *,
    no_go: bool,
    gate_verdicts: Sequence[GateVerdict],
    metrics: dict[str, Metric],
    evidence: Evidence,
    now: datetime,
    stage_started_at: datetime,
) -> CriterionResult:
    """Judge one criterion of a stage. ``gate_verdicts`` are the stage's verdicts (for METRICS)."""
    require_aware(now, "now")
    if criterion.kind is CriterionKind.METRICS:
        status, reason = _metrics(criterion, no_go, gate_verdicts)
    elif criterion.kind is CriterionKind.MANUAL:
        status, reason = _manual(criterion, no_go, evidence.signoffs)
    elif criterion.kind is CriterionKind.DRILL:
        status, reason = _drill(criterion, evidence, now, stage_started_at)
    else:
        metric = _metric_of(criterion, metrics)
        if criterion.kind is CriterionKind.COUNT:
            status, reason = _count(criterion, metric, evidence.latest(metric.id), now)
        else:
            status, reason = _window(criterion, metric, evidence.history(metric.id), now, stage_started_at)
    return CriterionResult(
        id=criterion.id,
        text=criterion.text,
        kind=criterion.kind,
        no_go=no_go,
        status=status,
        reason=reason,
        owners=criterion.owners,
    )


def _metric_of(criterion: Criterion, metrics: dict[str, Metric]) -> Metric:
    if criterion.metric is None or criterion.threshold is None:
        raise ValueError(
            f"criterion {criterion.id}: a {criterion.kind.value} criterion needs metric and threshold"
        )
    if criterion.metric not in metrics:
        raise ValueError(f"criterion {criterion.id}: unknown metric {criterion.metric!r}")
    return metrics[criterion.metric]


def _metrics(
    criterion: Criterion, no_go: bool, verdicts: Sequence[GateVerdict]
) -> tuple[CriterionStatus, str]:
    tables = set(criterion.tables)
    known = {v.table for v in verdicts}
    missing = sorted(tables - known)
    if missing:
        raise ValueError(f"criterion {criterion.id}: no gate table named {', '.join(missing)} in the stage")
    rows = [v for v in verdicts if v.table in tables and v.gating]
    if no_go:
        # A no-go "metrics" criterion holds when any of its gates crosses its alert.
        beyond = [v.metric for v in rows if v.verdict is Verdict.BEYOND_ALERT]
        if beyond:
            return CriterionStatus.MET, f"beyond alert: {', '.join(beyond)}"
    else:
        failing = [v.metric for v in rows if v.verdict in (Verdict.BETWEEN, Verdict.BEYOND_ALERT)]
        if failing:
            return CriterionStatus.NOT_MET, f"target missed: {', '.join(failing)}"
    unknown = [v.metric for v in rows if v.verdict in _UNKNOWN_VERDICTS]
    if unknown:
        return CriterionStatus.UNKNOWN, f"cannot judge yet: {', '.join(unknown)}"
    if no_go:
        return CriterionStatus.NOT_MET, f"no gate beyond alert in {', '.join(criterion.tables)}"
    return CriterionStatus.MET, f"all {len(rows)} gates meet target in {', '.join(criterion.tables)}"


_UNKNOWN_VERDICTS = (Verdict.NO_DATA, Verdict.ERROR, Verdict.NOT_YET_EVALUABLE)


def _manual(criterion: Criterion, no_go: bool, signoffs: frozenset[str]) -> tuple[CriterionStatus, str]:
    owners = f" by {' or '.join(criterion.owners)}" if criterion.owners else ""
    if criterion.id not in signoffs:
        return CriterionStatus.PENDING_SIGNOFF, f"waiting for sign-off{owners}"
    # Signing off a no-go criterion means a person checked it and it does not hold.
    if no_go:
        return CriterionStatus.NOT_MET, "signed off: checked, does not hold"
    return CriterionStatus.MET, "signed off"


def _drill(
    criterion: Criterion, evidence: Evidence, now: datetime, stage_started_at: datetime
) -> tuple[CriterionStatus, str]:
    """The drill's newest report decides: passed, during this stage and within the window, is MET; a
    newer failure is NOT_MET even after an older pass (the last drill is what the team knows now)."""
    if criterion.drill is None or criterion.window is None:
        raise ValueError(f"criterion {criterion.id}: a drill criterion needs drill and window")
    newest = evidence.until(now).newest_drill(criterion.drill)
    if newest is None:
        return CriterionStatus.UNKNOWN, f"no {criterion.drill} drill report"
    when = f"{criterion.drill} drill of {_iso(newest.finished_at)}"
    if newest.finished_at < stage_started_at:
        return CriterionStatus.UNKNOWN, f"{when} is from before this stage began; none since"
    if now - newest.finished_at > criterion.window:
        return CriterionStatus.UNKNOWN, f"{when} is older than {format_duration(criterion.window)}"
    if not newest.passed:
        return CriterionStatus.NOT_MET, f"{when}: {newest.verdict}" + (
            f" ({newest.report})" if newest.report else ""
        )
    return CriterionStatus.MET, f"{when}: passed" + (f" ({newest.report})" if newest.report else "")


def _usable(measurement: Measurement | None, metric: Metric, now: datetime) -> str | None:
    """Why a measurement cannot be used, or None when it can."""
    if measurement is None:
        return f"no measurement of {metric.id}"
    if measurement.phase is Phase.ERROR:
        return f"{metric.id}: source error: {measurement.message or 'unknown error'}"
    if measurement.phase is Phase.NO_DATA:
        return f"{metric.id}: no data"
    if measurement.observed_at > now:
        return f"{metric.id}: observed after now"
    if now - measurement.observed_at > metric.source.max_age:
        return f"{metric.id}: stale (older than {format_duration(metric.source.max_age)})"
    return None


def _count(
    criterion: Criterion, metric: Metric, latest: Measurement | None, now: datetime
) -> tuple[CriterionStatus, str]:
    assert criterion.threshold is not None
    problem = _usable(latest, metric, now)
    if problem is not None:
        return CriterionStatus.UNKNOWN, problem
    assert latest is not None and latest.value is not None
    holds = criterion.threshold.holds(latest.value)
    word = "holds" if holds else "does not hold"
    return (
        CriterionStatus.MET if holds else CriterionStatus.NOT_MET,
        f"{metric.id} = {latest.value:g}: {criterion.threshold} {word}",
    )


def _window(
    criterion: Criterion,
    metric: Metric,
    history: Sequence[Measurement],
    now: datetime,
    stage_started_at: datetime,
) -> tuple[CriterionStatus, str]:
    """The threshold must hold at every sample across the whole window, with no gap in the samples.

    A point sample covers its moment; a sample with ``since`` covers its whole span. A stretch longer
    than the source's max_age that no sample covers means nobody was looking: the window is not known
    to be clean, so the criterion is UNKNOWN rather than MET.
    """
    assert criterion.threshold is not None
    window = criterion.window if criterion.window is not None else timedelta(0)
    in_stage = now - stage_started_at
    if in_stage < window:
        return (
            CriterionStatus.NOT_MET,
            f"{span(in_stage)} in stage, window is {format_duration(window)}",
        )
    start = now - window
    samples = [m for m in history if start <= m.observed_at <= now and m.phase is Phase.OK]
    for sample in samples:
        assert sample.value is not None
        if not criterion.threshold.holds(sample.value):
            return (
                CriterionStatus.NOT_MET,
                f"{metric.id} = {sample.value:g} at {_iso(sample.observed_at)} breaks {criterion.threshold}",
            )
    gap = _longest_gap(start, now, [(s.since or s.observed_at, s.observed_at) for s in samples])
    if not samples or gap > metric.source.max_age:
        return (
            CriterionStatus.UNKNOWN,
            f"{metric.id}: window {format_duration(window)} not covered "
            f"(gap of {span(gap)}, max age {format_duration(metric.source.max_age)})",
        )
    return (
        CriterionStatus.MET,
        f"{metric.id} {criterion.threshold} for the whole {format_duration(window)} ({len(samples)} samples)",
    )


def _longest_gap(start: datetime, end: datetime, spans: Sequence[tuple[datetime, datetime]]) -> timedelta:
    """The longest stretch of ``start``..``end`` that no span covers."""
    longest = timedelta(0)
    covered_to = start
    for begin, finish in sorted(spans):
        longest = max(longest, begin - covered_to)
        covered_to = max(covered_to, finish)
    return max(longest, end - covered_to)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
