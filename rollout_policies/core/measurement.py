"""What the decision core reads: measurements of plan metrics, and the evidence for one evaluation.

Providers return ``Measurement`` values (providers may import the core; the core never imports
providers). A failed or empty query is a measurement too, with phase ``error`` or ``no_data``: an
error inside an evaluation is data, never an exception and never a pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Phase(StrEnum):
    """The outcome of one query of a metric source."""

    OK = "ok"  # a value was observed
    NO_DATA = "no_data"  # the source answered, with nothing for this metric
    ERROR = "error"  # the source failed or could not be reached


def require_aware(moment: datetime, name: str) -> datetime:
    """Times in the core are always zone-aware: a naive time is ambiguous across regions and CI."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} needs a time zone (write it as ...Z)")
    return moment


@dataclass(frozen=True, slots=True)
class Measurement:
    """One observation of one metric: phase, value (when ok), when it was observed, and why not.

    ``observed_at`` is when the value was true (for ``no_data``/``error``: when the source was asked).
    ``since``, when set, says the value sums up the whole span ``since``..``observed_at`` (a count of
    critical issues over the last 48 hours): one such measurement can cover a clean-window criterion.
    """

    metric: str
    phase: Phase
    value: float | None
    observed_at: datetime
    message: str = ""
    since: datetime | None = None

    def __post_init__(self) -> None:
        require_aware(self.observed_at, f"measurement of {self.metric}: observed_at")
        if self.since is not None:
            require_aware(self.since, f"measurement of {self.metric}: since")
            if self.since > self.observed_at:
                raise ValueError(f"measurement of {self.metric}: since is after observed_at")
        if self.phase is Phase.OK:
            if self.value is None:
                raise ValueError(f"measurement of {self.metric}: phase ok needs a value")
            if isinstance(self.value, bool) or not math.isfinite(self.value):
                raise ValueError(f"measurement of {self.metric}: value must be a finite number")

    @classmethod
    def ok(
        cls,
        metric: str,
        value: float,
        observed_at: datetime,
        message: str = "",
        *,
        since: datetime | None = None,
    ) -> Measurement:
        return cls(metric, Phase.OK, float(value), observed_at, message, since)

    @classmethod
    def no_data(cls, metric: str, observed_at: datetime, message: str = "") -> Measurement:
        return cls(metric, Phase.NO_DATA, None, observed_at, message)

    @classmethod
    def error(cls, metric: str, observed_at: datetime, message: str) -> Measurement:
        return cls(metric, Phase.ERROR, None, observed_at, message)


def _count(value: float, what: str) -> float:
    if isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number, at least 0")
    return float(value)


@dataclass(frozen=True, slots=True)
class RateSample:
    """One interval's counts per version, for a rate comparison gate (increments, not running totals).

    ``observed_at`` ends the interval. Events are the bad ones (errors, crashes, failed checkouts),
    trials what they are out of (requests, sessions, checkouts); canary is the candidate (green),
    baseline the stable version (blue) over the same interval.
    """

    metric: str
    observed_at: datetime
    canary_events: float
    canary_trials: float
    baseline_events: float
    baseline_trials: float

    def __post_init__(self) -> None:
        where = f"counts of {self.metric}"
        require_aware(self.observed_at, f"{where}: observed_at")
        for name in ("canary_events", "canary_trials", "baseline_events", "baseline_trials"):
            _count(getattr(self, name), f"{where}: {name}")
        if self.canary_events > self.canary_trials or self.baseline_events > self.baseline_trials:
            raise ValueError(f"{where}: events cannot exceed trials")


@dataclass(frozen=True, slots=True)
class LatencySample:
    """One interval's latency histograms per version, for a latency comparison gate.

    ``edges`` are the bucket upper bounds in seconds (Prometheus ``le``, without ``+Inf``); each count
    list has one count per edge plus the ``+Inf`` bucket last, not cumulative, for the interval
    ending at ``observed_at``.
    """

    metric: str
    observed_at: datetime
    edges: tuple[float, ...]
    canary: tuple[float, ...]
    baseline: tuple[float, ...]

    def __post_init__(self) -> None:
        where = f"histograms of {self.metric}"
        require_aware(self.observed_at, f"{where}: observed_at")
        if len(self.edges) < 2 or any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError(f"{where}: edges must be at least two increasing bucket bounds")
        if not all(math.isfinite(edge) for edge in self.edges):
            raise ValueError(f"{where}: edges must be finite (the +Inf bucket is implied)")
        for name in ("canary", "baseline"):
            counts = getattr(self, name)
            if len(counts) != len(self.edges) + 1:
                raise ValueError(
                    f"{where}: {name} needs {len(self.edges) + 1} counts (one per edge, then +Inf)"
                )
            for count in counts:
                _count(count, f"{where}: {name} counts")


ComparisonSample = RateSample | LatencySample


@dataclass(frozen=True, slots=True)
class DrillResult:
    """A drill's committed report, as a drill criterion reads it: which drill, its verdict, when it
    finished, and where the report is (``reports/drills/<drill>/<stamp>.json``)."""

    drill: str
    verdict: str  # passed, failed, inconclusive, dry-run
    finished_at: datetime
    report: str = ""

    def __post_init__(self) -> None:
        require_aware(self.finished_at, f"drill {self.drill}: finished_at")

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything one evaluation reads besides the plan and "now".

    ``measurements`` may hold several measurements per metric (a history); the newest one is the
    metric's current value, the whole series feeds windows and rollback triggers.
    ``signoffs`` are the ids of manual criteria a person has signed off.
    ``samples`` are per-version counts or histograms over time, read by comparison gates.
    """

    measurements: tuple[Measurement, ...] = ()
    signoffs: frozenset[str] = field(default_factory=frozenset)
    samples: tuple[ComparisonSample, ...] = ()
    drills: tuple[DrillResult, ...] = ()  # committed drill reports, for drill criteria

    @classmethod
    def of(
        cls,
        measurements: Iterable[Measurement],
        signoffs: Iterable[str] = (),
        *,
        samples: Iterable[ComparisonSample] = (),
        drills: Iterable[DrillResult] = (),
    ) -> Evidence:
        return cls(tuple(measurements), frozenset(signoffs), tuple(samples), tuple(drills))

    def until(self, moment: datetime) -> Evidence:
        """What was known at ``moment``: the measurements and samples observed by then (a replay)."""
        return Evidence(
            tuple(m for m in self.measurements if m.observed_at <= moment),
            self.signoffs,
            tuple(s for s in self.samples if s.observed_at <= moment),
            tuple(d for d in self.drills if d.finished_at <= moment),
        )

    def newest_drill(self, drill: str) -> DrillResult | None:
        """The drill's newest executed report (a dry run proves nothing), or None."""
        reports = [d for d in self.drills if d.drill == drill and d.verdict != "dry-run"]
        return max(reports, key=lambda d: d.finished_at) if reports else None

    def samples_of(self, metric: str) -> tuple[ComparisonSample, ...]:
        """The metric's comparison samples, oldest first."""
        return tuple(sorted((s for s in self.samples if s.metric == metric), key=lambda s: s.observed_at))

    def history(self, metric: str) -> tuple[Measurement, ...]:
        """The metric's measurements, oldest first."""
        return tuple(
            sorted((m for m in self.measurements if m.metric == metric), key=lambda m: m.observed_at)
        )

    def latest(self, metric: str) -> Measurement | None:
        series = self.history(metric)
        return series[-1] if series else None

    def latest_by_metric(self) -> Mapping[str, Measurement]:
        newest: dict[str, Measurement] = {}
        for m in self.measurements:
            if m.metric not in newest or m.observed_at >= newest[m.metric].observed_at:
                newest[m.metric] = m
        return newest
