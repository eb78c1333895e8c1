"""Per-gate verdicts: one metric's newest measurement judged against a gate's target and alert.

A gate with a ``comparison`` is also judged by the sequential canary-versus-baseline test over the
stage's per-version counts (``core.sequential``); the gate's verdict is the worse of the two.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import numpy as np

from rollout_policies.core.durations import span
from rollout_policies.core.measurement import (
    ComparisonSample,
    Evidence,
    LatencySample,
    Measurement,
    Phase,
    RateSample,
    require_aware,
)
from rollout_policies.core.sequential import (
    Comparison,
    LatencyComparisonBatch,
    Outcome,
    RateComparisonBatch,
    baseline_dispersion,
    comparison_evidence,
    histogram_dispersion,
)
from rollout_policies.errors import UserError
from rollout_policies.plan.model import (
    ComparisonKind,
    Gate,
    GateComparison,
    Metric,
    Stage,
    Threshold,
    format_duration,
)

# The e-detector covers the plan's longest stage (two weeks): within it, a restarted test alarms with
# probability at most its share of alpha (docs/statistics.md).
DETECTOR_SPAN = timedelta(days=14)


class Verdict(StrEnum):
    MEETS_TARGET = "meets_target"
    BETWEEN = "between"  # target missed, alert not crossed
    BEYOND_ALERT = "beyond_alert"
    NO_DATA = "no_data"  # no measurement, an empty answer, or older than the source's max_age
    ERROR = "error"  # the source failed or could not be reached
    NOT_YET_EVALUABLE = "not_yet_evaluable"  # the metric's evaluable_after has not passed in the stage
    MONITOR = "monitor"  # monitor-only: reported, never decides


@dataclass(frozen=True, slots=True, eq=False)
class ComparisonState:
    """A comparison gate's sequential test after the stage's first ``seen`` samples: the summary an
    evaluation hands to the next, so that one reads only the intervals that arrived since.

    ``key`` names what the test is of (metric, settings, stage start, the baseline history that set
    its prior); ``digest`` fingerprints the samples it has read. ``judge_comparison`` resumes from a
    state only when both match the samples it is given, and otherwise replays the stage from its
    start, so a state can only save time, never change a verdict. Treat it as opaque and never
    mutate its ``test``: ``judge_comparison`` advances a copy.
    """

    key: tuple[object, ...]
    seen: int
    digest: int
    test: RateComparisonBatch | LatencyComparisonBatch


@dataclass(frozen=True, slots=True)
class ComparisonVerdict:
    """The comparison part of a gate's verdict: the sequential test's outcome as a gate verdict.

    ``result`` is the test's evidence (None when there was nothing to compare: no counts, an error).
    ``state`` is the test after this evaluation's samples, for the next one (``ComparisonState``);
    ``resumed`` says whether this evaluation started from a state instead of the stage start.
    """

    settings: GateComparison
    verdict: Verdict
    reason: str
    result: Comparison | None = None
    state: ComparisonState | None = field(default=None, compare=False, repr=False)
    resumed: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """A gate's verdict with everything a reader needs to check it.

    With a comparison, ``verdict`` and ``reason`` combine the thresholds' and the comparison's (the
    worse of the two); ``comparison`` holds the comparison's own part.
    """

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
    comparison: ComparisonVerdict | None = None

    @property
    def gating(self) -> bool:
        """Whether this verdict takes part in the decision (monitor-only rows never do)."""
        return self.verdict is not Verdict.MONITOR


def _show(value: float, unit: str) -> str:
    return f"{value:g}{unit}" if unit in ("%", "s", "ms", "MB") else f"{value:g} {unit}".rstrip()


# Which verdict is worse when a gate's thresholds and its comparison disagree: rolling back beats
# everything, then a failing source, missing data, a missed target, and meeting target last.
_SEVERITY = {
    Verdict.MEETS_TARGET: 0,
    Verdict.BETWEEN: 1,
    Verdict.NO_DATA: 2,
    Verdict.ERROR: 3,
    Verdict.BEYOND_ALERT: 4,
}

_OUTCOME_VERDICTS = {
    Outcome.REGRESSION: Verdict.BEYOND_ALERT,
    Outcome.NO_REGRESSION: Verdict.MEETS_TARGET,
    Outcome.CONTINUE: Verdict.BETWEEN,
}


def compares_at(weight: float | None) -> bool:
    """Whether comparison gates apply at a step of this traffic weight (None: the weight is unknown).

    The test needs the two versions serving randomly split traffic at the same time. At weight 0
    the candidate serves only a hand-picked cohort (beta: power users), unlike everyone else; at
    100 there is no stable traffic left to compare with. Gates there are judged by thresholds alone.
    """
    return weight is None or 0 < weight < 100


def evaluate_gate(
    gate: Gate,
    metric: Metric,
    measurement: Measurement | None,
    *,
    now: datetime,
    stage_started_at: datetime,
    table: str = "",
    samples: Sequence[ComparisonSample] = (),
    weight: float | None = None,
    comparison_state: ComparisonState | None = None,
) -> GateVerdict:
    """Judge one gate. Order matters: monitor-only, then evaluability, then the data, then thresholds.

    ``samples`` are the metric's per-version counts or histograms (any order), read when the gate has
    a comparison and ``weight`` (the step's traffic weight) splits traffic (see ``compares_at``).
    ``comparison_state``: the comparison's state from the previous evaluation, if kept (the verdict's
    ``comparison.state`` is the next one); the verdict is the same with or without it.
    """
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
    compared = gate.comparison is not None and compares_at(weight)

    if gate.monitor_only or (gate.target is None and gate.alert is None and not compared):
        what = gate.note or "no thresholds"
        shown = "no data" if ok_value is None else _show(ok_value, metric.unit)
        return verdict(Verdict.MONITOR, f"monitor only ({what}): {shown}", ok_value)

    in_stage = now - stage_started_at
    if in_stage < metric.evaluable_after:
        return verdict(
            Verdict.NOT_YET_EVALUABLE,
            f"evaluable {format_duration(metric.evaluable_after)} into the stage; {span(in_stage)} so far",
        )
    thresholds = _judge_thresholds(gate, metric, measurement, now=now, verdict=verdict)
    if not compared:
        assert thresholds is not None  # a gate without thresholds or a comparison is monitor-only
        return thresholds
    assert gate.comparison is not None
    part = judge_comparison(
        gate.comparison, metric, samples, now=now, stage_started_at=stage_started_at, state=comparison_state
    )
    if thresholds is None:  # the comparison alone decides this gate
        return _with_comparison(verdict(part.verdict, part.reason, ok_value), part, part.verdict, part.reason)
    worse = _SEVERITY[part.verdict] > _SEVERITY[thresholds.verdict]
    if worse:
        return _with_comparison(thresholds, part, part.verdict, part.reason)
    if part.verdict is thresholds.verdict and part.verdict is not Verdict.MEETS_TARGET:
        return _with_comparison(thresholds, part, part.verdict, f"{thresholds.reason}; {part.reason}")
    return _with_comparison(thresholds, part, thresholds.verdict, thresholds.reason)


def _with_comparison(base: GateVerdict, part: ComparisonVerdict, kind: Verdict, reason: str) -> GateVerdict:
    return GateVerdict(
        table=base.table,
        metric=base.metric,
        name=base.name,
        verdict=kind,
        value=base.value,
        target=base.target,
        alert=base.alert,
        unit=base.unit,
        reason=reason,
        observed_at=base.observed_at,
        comparison=part,
    )


class _Make(Protocol):
    """The signature of evaluate_gate's local verdict builder."""

    def __call__(self, kind: Verdict, reason: str, value: float | None = None) -> GateVerdict: ...


def _judge_thresholds(
    gate: Gate,
    metric: Metric,
    measurement: Measurement | None,
    *,
    now: datetime,
    verdict: _Make,
) -> GateVerdict | None:
    """The verdict of the gate's target and alert on the newest measurement (None: it has neither)."""
    if gate.target is None and gate.alert is None:
        return None
    ok_value = measurement.value if measurement is not None and measurement.phase is Phase.OK else None
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


def judge_comparison(
    settings: GateComparison,
    metric: Metric,
    samples: Sequence[ComparisonSample],
    *,
    now: datetime,
    stage_started_at: datetime,
    state: ComparisonState | None = None,
) -> ComparisonVerdict:
    """The sequential test over the samples observed in the stage, up to ``now``, as a gate verdict.

    REGRESSION -> beyond alert (roll back), NO_REGRESSION -> meets target, CONTINUE -> between
    (hold). No samples in the stage -> no data; samples from the future, of the wrong kind or with
    changing buckets -> error. Stale samples (the newest older than the source's max_age) -> no
    data, unless the evidence already shows a regression: that evidence stays valid.

    ``state``: the previous evaluation's ``ComparisonVerdict.state``. When it is of this gate, this
    stage start and this history, and the samples it read are the first ones given now (same
    values), only the newer samples are fed; otherwise the whole stage is replayed. Either way the
    result is the same; the verdict carries the state after this evaluation.
    """
    require_aware(now, "now")
    require_aware(stage_started_at, "stage_started_at")

    def part(kind: Verdict, reason: str, result: Comparison | None = None) -> ComparisonVerdict:
        return ComparisonVerdict(settings, kind, reason, result)

    mine = sorted((s for s in samples if s.metric == metric.id), key=lambda s: s.observed_at)
    future = [s for s in mine if s.observed_at > now]
    if future:
        return part(
            Verdict.ERROR,
            f"comparison counts observed at {_iso(future[0].observed_at)}, after now ({_iso(now)}): "
            "clocks disagree",
        )
    in_stage = [s for s in mine if s.observed_at > stage_started_at]
    # Before the stage: the baseline's history, which sets how much the versions' rates jitter.
    history = [s for s in mine if s.observed_at <= stage_started_at]
    what = "rate counts" if settings.kind is ComparisonKind.RATE else "latency histograms"
    if not in_stage:
        return part(Verdict.NO_DATA, f"no per-version {what} of {metric.id} in this stage to compare")
    wanted = RateSample if settings.kind is ComparisonKind.RATE else LatencySample
    if not all(isinstance(s, wanted) for s in (*in_stage, *history)):
        return part(
            Verdict.ERROR, f"the comparison is of kind {settings.kind.value} but was given other samples"
        )
    key = (metric.id, settings, stage_started_at, len(history), hash(tuple(history)))
    resumed = state is not None and _resumes(state, key, in_stage)
    try:
        if state is not None and resumed:
            test = copy.deepcopy(state.test)
            _feed(test, in_stage[state.seen :])
        else:
            test = _start(settings, in_stage[0], history)
            _feed(test, in_stage)
    except (UserError, ValueError) as err:
        return part(Verdict.ERROR, f"comparison failed: {err}")
    result = _result(settings, test)
    after = ComparisonState(key, len(in_stage), hash(tuple(in_stage)), test)
    summary = str(comparison_evidence(result)["summary"])
    kind = _OUTCOME_VERDICTS[result.verdict]
    age = now - in_stage[-1].observed_at
    if kind is not Verdict.BEYOND_ALERT and age > metric.source.max_age:
        kind = Verdict.NO_DATA
        reason = (
            f"comparison stale: newest counts {span(age)} old, max age "
            f"{format_duration(metric.source.max_age)} ({summary})"
        )
    else:
        reason = f"vs baseline: {summary}"
    return ComparisonVerdict(settings, kind, reason, result, after, resumed)


def _resumes(state: ComparisonState, key: tuple[object, ...], in_stage: Sequence[ComparisonSample]) -> bool:
    """Whether ``state`` summarises the first samples of ``in_stage`` for this gate, stage and history."""
    return (
        state.key == key
        and 0 < state.seen <= len(in_stage)
        and hash(tuple(in_stage[: state.seen])) == state.digest
    )


def _horizon(settings: GateComparison) -> int:
    """The e-detector's span in intervals: the plan's longest stage, two weeks, at the gate's interval."""
    return max(1, math.ceil(DETECTOR_SPAN / settings.interval))


def _start(
    settings: GateComparison, first: ComparisonSample, history: Sequence[ComparisonSample] = ()
) -> RateComparisonBatch | LatencyComparisonBatch:
    """A fresh test for the stage (nothing fed yet); ``history`` (the baseline before the stage) sets
    the dispersion prior, and ``first`` (the stage's first sample) a latency test's bucket edges."""
    alpha, margin, tolerance, dispersion = (
        settings.alpha,
        settings.margin,
        settings.tolerance,
        settings.dispersion,
    )
    horizon = _horizon(settings)
    scale = settings.count_scale  # increase() reads range / interval counts per event
    if settings.kind is ComparisonKind.RATE:
        prior, rate = None, None
        if len(history) >= 2:
            events = np.array([s.baseline_events for s in history if isinstance(s, RateSample)])
            trials = np.array([s.baseline_trials for s in history if isinstance(s, RateSample)])
            prior = float(baseline_dispersion(events, trials, count_scale=scale)[0][0])
            rate = float(events.sum() / trials.sum()) if trials.sum() > 0 else None
        return RateComparisonBatch(
            1,
            alpha=alpha,
            margin=margin,
            tolerance=tolerance,
            dispersion=dispersion,
            dispersion_prior=prior,
            baseline_rate=rate,
            horizon=horizon,
            count_scale=scale,
        )
    assert isinstance(first, LatencySample)
    past = [s for s in history if isinstance(s, LatencySample) and s.edges == first.edges]
    hist_prior = (
        histogram_dispersion(np.array([s.baseline for s in past]), count_scale=scale)
        if len(past) >= 2
        else None
    )
    return LatencyComparisonBatch(
        1,
        first.edges,
        quantile=settings.latency_quantile,
        alpha=alpha,
        margin=margin,
        tolerance=tolerance,
        dispersion=dispersion,
        dispersion_prior=hist_prior,
        horizon=horizon,
        count_scale=scale,
    )


def _feed(test: RateComparisonBatch | LatencyComparisonBatch, samples: Sequence[ComparisonSample]) -> None:
    """Advance the test by the samples, oldest first (the stage's, so nothing restarts mid-stage)."""
    if isinstance(test, RateComparisonBatch):
        for s in samples:
            assert isinstance(s, RateSample)
            test.observe(s.canary_events, s.canary_trials, s.baseline_events, s.baseline_trials)
        return
    edges = tuple(float(e) for e in test.edges)
    for s in samples:
        assert isinstance(s, LatencySample)
        if s.edges != edges:
            raise ValueError(f"histogram buckets changed at {_iso(s.observed_at)}")
        test.observe(np.asarray([s.canary], dtype=np.float64), np.asarray([s.baseline], dtype=np.float64))


def _result(settings: GateComparison, test: RateComparisonBatch | LatencyComparisonBatch) -> Comparison:
    if isinstance(test, RateComparisonBatch):
        return test.comparison(0, metric="rate")
    return test.comparison(0, metric=f"latency p{settings.latency_quantile * 100:g}")


def evaluate_stage_gates(
    stage: Stage,
    metrics: dict[str, Metric],
    evidence: Evidence,
    *,
    now: datetime,
    stage_started_at: datetime,
    step: int | None = None,
    comparison_states: Mapping[str, ComparisonState] | None = None,
) -> tuple[GateVerdict, ...]:
    """Every gate of every table of a stage, in plan order (``step``: which traffic step, if known).

    ``comparison_states``: per metric id, a comparison's state from the previous evaluation (see
    ``judge_comparison``); the verdicts are the same without them, only slower to reach.
    """
    newest = evidence.latest_by_metric()
    states = comparison_states or {}
    weight = stage.steps[step].weight if step is not None else None
    return tuple(
        evaluate_gate(
            gate,
            metrics[gate.metric],
            newest.get(gate.metric),
            now=now,
            stage_started_at=stage_started_at,
            table=table.name,
            samples=evidence.samples_of(gate.metric) if gate.comparison is not None else (),
            weight=weight,
            comparison_state=states.get(gate.metric),
        )
        for table in stage.tables
        for gate in table.gates
    )


def _suffix(message: str) -> str:
    return f": {message}" if message else ""


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
