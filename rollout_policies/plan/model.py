"""The typed rollout plan: stages, traffic steps, gates, go/no-go criteria, triggers and objectives.

Every model is immutable and validated when built. The loader (``plan.loader``) turns a YAML file
into a ``Plan`` and maps validation errors to ``file:line: field.path: problem``.

Vocabulary (from the seed plan):
- a *stage* is a release phase (beta, limited, medium, majority, full) with an audience, traffic
  *steps*, a minimum duration, a feature set, metric *gates* and go/no-go *criteria*;
- a *gate* compares one metric with a *target* and an *alert* threshold; a monitor-only gate is
  reported but never decides; a gate may also carry a *comparison* of the candidate against the
  stable version (a sequential test on per-version counts);
- a *trigger* rolls back automatically when its condition holds for its window.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from rollout_policies.errors import UserError


class PlanError(UserError):
    """A plan file that cannot be used; the message is one line naming the file, line and field."""


class UnknownStage(PlanError):
    """A stage id the plan does not have. Every caller gets the same line: no translation per caller."""

    def __init__(self, plan: Plan, stage_id: str) -> None:
        known = ", ".join(stage.id for stage in plan.stages)
        super().__init__(f"stage {stage_id!r} is not in plan {plan.name} (stages: {known})")
        self.stage_id = stage_id


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# A plan spans weeks, not centuries: no duration in it is longer than a year. The bound also keeps
# every sum of durations far inside what a timedelta holds (an infinite bake never overflows).
MAX_DURATION = timedelta(days=365)


def is_bool(value: Any) -> bool:
    """True for ``True``/``False``, including ruamel's anchored booleans (an ``int`` subclass)."""
    return isinstance(value, bool) or type(value).__name__ == "ScalarBoolean"


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """``"90s"``, ``"5m"``, ``"48h"``, ``"4d"``, ``"2w"`` (or seconds as a number) to a timedelta.

    A duration is never negative and at most ``MAX_DURATION``; checked on the number of seconds
    before a timedelta is built, so an infinite or huge value is an error, never an OverflowError.
    """
    if isinstance(text, timedelta):
        seconds = text.total_seconds()
    elif isinstance(text, (int, float)) and not is_bool(text):
        seconds = float(text)
    elif isinstance(text, str) and (match := _DURATION.match(text)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h, d or w, such as 48h)")
    if math.isnan(seconds):
        raise ValueError(f"not a duration: {text!r} (use a number with s, m, h, d or w, such as 48h)")
    if seconds < 0:
        raise ValueError(f"a duration is never negative, got {_shown(text)}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{_shown(text)} is longer than a plan spans (at most {MAX_DURATION.days}d)")
    return timedelta(seconds=seconds)


def positive_duration(text: str | int | float | timedelta) -> timedelta:
    """A duration above zero (a maximum age, an RTO, a stage's minimum duration...)."""
    value = parse_duration(text)
    if value <= timedelta(0):
        raise ValueError(f"must be longer than zero, got {_shown(text)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else f"{value}"
    return text if len(text) <= 40 else f"{text[:37]}..."


def _number(value: Any) -> Any:
    """A plan number is never a boolean (YAML reads ``yes`` as true, and true is no weight), NaN or
    infinity; anything else goes on to pydantic's own number parsing and its messages."""
    if is_bool(value):
        raise ValueError(f"expected a number, got a boolean ({str(bool(value)).lower()})")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value}")
    return value


Number = Annotated[float, BeforeValidator(_number)]
Whole = Annotated[int, BeforeValidator(_number)]

# Ids end up in branch names, file names, commit trailers and Kubernetes labels: lower-case letters,
# digits and dashes only, so "/", "..", NUL or spaces can never reach a path or a ref. Metric ids and
# feature names are Prometheus-style instead (underscores), as they name series and flags.
SAFE_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
METRIC_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def safe_id(value: Any) -> Any:
    if isinstance(value, str) and not SAFE_ID.match(value):
        raise ValueError(
            f"{_shown(value)} is not a safe id (lower-case letters, digits and dashes, "
            "at most 63, starting and ending with a letter or digit)"
        )
    return value


def metric_id(value: Any) -> Any:
    return _name(value, "metric id")


def feature_name(value: Any) -> Any:
    return _name(value, "feature name")


def _name(value: Any, kind: str) -> Any:
    if isinstance(value, str) and not METRIC_ID.match(value):
        raise ValueError(
            f"{_shown(value)} is not a safe {kind} (a lower-case letter, then lower-case letters, "
            "digits and underscores, at most 63)"
        )
    return value


SafeId = Annotated[str, BeforeValidator(safe_id)]
MetricId = Annotated[str, BeforeValidator(metric_id)]


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for suffix, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{suffix}"
    return f"{seconds}s"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)


class Direction(StrEnum):
    """Which way is good for a metric."""

    LOWER_IS_BETTER = "lower"
    HIGHER_IS_BETTER = "higher"


class Op(StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="

    def holds(self, value: float, bound: float) -> bool:
        return {
            Op.LT: value < bound,
            Op.LE: value <= bound,
            Op.GT: value > bound,
            Op.GE: value >= bound,
            Op.EQ: value == bound,
        }[self]


_THRESHOLD = re.compile(r"^\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")


class Threshold(_Frozen):
    """A comparison such as ``< 1`` (value in the metric's unit)."""

    op: Op
    value: Number

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            match = _THRESHOLD.match(data)
            if not match:
                raise ValueError(
                    f"not a threshold: {data!r} (write it as an operator and a number, such as '< 1')"
                )
            return {"op": match.group(1), "value": float(match.group(2))}
        return data

    def holds(self, value: float) -> bool:
        return self.op.holds(value, self.value)

    def __str__(self) -> str:
        return f"{self.op.value} {self.value:g}"


Duration = Annotated[timedelta, Field(description="a duration such as 48h")]


class ValueRange(_Frozen):
    """The values a metric can take, ends included; a reading outside them is an error, not a verdict."""

    min: Number | None = None
    max: Number | None = None

    @model_validator(mode="after")
    def _ordered(self) -> ValueRange:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self

    def holds(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        if self.min is not None and self.max is not None:
            return f"within {self.min:g}..{self.max:g}"
        if self.min is not None:
            return f">= {self.min:g}"
        if self.max is not None:
            return f"<= {self.max:g}"
        return "any finite number"


# What a unit says about the values it can take (docs/providers.md, "Valid ranges"). A unit not
# listed here (money, a score, none) allows any finite number unless the metric gives a range.
_PERCENT = ("a percentage", ValueRange(min=0, max=100))
_POINTS = ("percentage points", ValueRange(min=-100, max=100))
_DURATION_UNIT = ("a duration", ValueRange(min=0))
_SIZE = ("a size", ValueRange(min=0))
_COUNT = ("a count", ValueRange(min=0))
_RATE = ("a rate", ValueRange(min=0))
_RATIO = ("a ratio", ValueRange(min=0))
_ANY = ("", ValueRange())
UNIT_RANGES: dict[str, tuple[str, ValueRange]] = {
    "%": _PERCENT,
    "percent": _PERCENT,
    "pp": _POINTS,
    **{unit: _DURATION_UNIT for unit in ("ms", "s", "min", "h", "d", "seconds", "minutes", "hours", "days")},
    **{unit: _SIZE for unit in ("B", "KB", "MB", "GB", "bytes")},
    **{
        unit: _COUNT
        for unit in (
            "alerts",
            "bugs",
            "crashes",
            "errors",
            "events",
            "hosts",
            "issues",
            "items",
            "orders",
            "pods",
            "referrals",
            "requests",
            "sessions",
            "tickets",
            "users",
            "count",
        )
    },
    "ratio": _RATIO,
}


def unit_range(unit: str) -> tuple[str, ValueRange]:
    """What the unit is (``"a percentage"``) and the values it allows; a ``x/y`` unit is a rate."""
    if unit in UNIT_RANGES:
        return UNIT_RANGES[unit]
    if "/" in unit:  # "%/hr", "orders/user/week", "req/s": so much of something per something
        return _RATE
    return _ANY


class MetricSource(_Frozen):
    """Where a metric's value comes from: a provider type and its query."""

    provider: str  # a name in the provider registry: prometheus, cloudwatch, sql, json_http, manual
    query: str = ""
    # Provider-specific settings (CloudWatch namespace and dimensions, JSON field path, ...).
    options: dict[str, Any] = Field(default_factory=dict)
    # Older data than this counts as no data.
    max_age: Duration = timedelta(minutes=15)

    @field_validator("max_age", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return positive_duration(value)

    @field_validator("options")
    @classmethod
    def _finite_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        _finite_inside(value, "")
        return value


def _finite_inside(value: Any, where: str) -> None:
    """Free-form settings still hold no NaN or infinity (a CloudWatch period of .inf is no setting)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite_inside(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _finite_inside(item, f"{where}[{index}]")


class Metric(_Frozen):
    """A metric the plan measures, defined once and used by gates in any stage."""

    id: MetricId
    name: str  # as the seed writes it, e.g. "Crashes/Exceptions"
    unit: str = ""  # "%", "s", "ms", "MB", "%/hr", "min", "score"
    direction: Direction | None = None  # None for monitor-only metrics with no good direction
    # The values a reading can take, when the unit alone does not say it right (a growth in "%" can
    # be negative or above 100; an NPS "score" lies in 0..10). Default: the unit's range.
    range: ValueRange | None = None
    source: MetricSource
    # The metric says nothing before this much time has passed in the stage (retention needs days).
    evaluable_after: Duration = timedelta(0)
    description: str = ""

    @field_validator("evaluable_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)

    @property
    def valid_range(self) -> ValueRange:
        """The values a reading of this metric can take: the plan's ``range``, else the unit's."""
        return self.range if self.range is not None else unit_range(self.unit)[1]

    @property
    def range_text(self) -> str:
        """The valid range in words: "within 0..100 (a percentage)", ">= -100 (the plan's range)"."""
        if self.range is not None:
            return f"{self.range} (the plan's range)"
        what, values = unit_range(self.unit)
        return f"{values} ({what})" if what else str(values)


class ComparisonKind(StrEnum):
    """What a comparison gate compares between the candidate and the stable version."""

    RATE = "rate"  # counts of bad events (errors, crashes, failed checkouts) per trials
    LATENCY = "latency"  # a latency quantile, through latency histograms


class GateComparison(_Frozen):
    """A canary-versus-baseline comparison on a gate, next to its absolute thresholds.

    The candidate's counts are compared with the stable version's by an anytime-valid sequential
    test (``core.sequential``, docs/statistics.md): ``alpha`` bounds its false-rollback rate however
    often it is evaluated; a canary-to-baseline ratio up to ``1 + margin`` is no regression; the gate
    passes once the ratio is shown to be below ``tolerance``. ``quantile`` is for latency only.
    """

    kind: ComparisonKind
    alpha: Number = 0.01
    margin: Number = 0.0
    tolerance: Number = 1.5
    quantile: Number | None = None  # latency: the quantile compared (0.95 when not given)
    dispersion: Number | None = None  # a fixed overdispersion factor >= 1; None estimates it
    # Where live counts come from (PromQL range queries, one series per version; docs/providers.md).
    # Without them only a metrics file supplies the samples. A rate comparison names ``events`` and
    # ``trials``; a latency comparison names ``histogram`` (grouped by ``label`` and ``le``).
    events: str | None = None  # rate: bad events per interval, e.g. sum by (track) (increase(...[1m]))
    trials: str | None = None  # rate: what the events are out of, per interval
    histogram: str | None = None  # latency: cumulative bucket counts per interval, by (label, le)
    label: str = "track"  # the series label that tells the versions apart
    canary: str = "candidate"  # its value on the candidate's series
    baseline: str = "stable"  # its value on the stable version's series
    # The range-query step: one sample per interval.
    interval: Duration = timedelta(minutes=1)
    # How often Prometheus scrapes the counters (its global scrape_interval; 1m is Prometheus'
    # default). A query's range must hold two scrapes, or increase() reads nothing, and at most the
    # interval plus one scrape, or consecutive intervals count the same events: interval + scrape
    # (e.g. [75s] at 15 s scrapes and 1m intervals) tiles the counters exactly.
    scrape_interval: Duration = timedelta(minutes=1)
    # The series label that names the user segment. Needed when a stage keeps segments from the
    # candidate (exclude_segments): the baseline is then filtered to the segments the candidate
    # serves, so like is compared with like; the queries must group by it.
    segment_label: str | None = None

    @field_validator("interval", "scrape_interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> timedelta:
        return positive_duration(value)

    @field_validator("alpha")
    @classmethod
    def _alpha(cls, value: float) -> float:
        if not 0 < value < 0.5:
            raise ValueError(f"alpha must be above 0 and below 0.5, got {value:g}")
        return value

    @field_validator("margin")
    @classmethod
    def _margin(cls, value: float) -> float:
        if not 0 <= value < 10:
            raise ValueError(f"margin must be at least 0 (and below 10), got {value:g}")
        return value

    @field_validator("quantile")
    @classmethod
    def _quantile(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value < 1:
            raise ValueError(f"quantile must be above 0 and below 1, got {value:g}")
        return value

    @field_validator("dispersion")
    @classmethod
    def _dispersion(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError(f"dispersion must be at least 1 (or left out to estimate it), got {value:g}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> GateComparison:
        if self.tolerance <= 1 + self.margin:
            raise ValueError(
                f"tolerance must be above 1 + margin ({1 + self.margin:g}), got {self.tolerance:g}"
            )
        if self.kind is ComparisonKind.RATE and self.quantile is not None:
            raise ValueError("quantile is for latency comparisons; a rate comparison has none")
        if self.kind is ComparisonKind.RATE:
            if self.histogram is not None:
                raise ValueError(
                    "histogram is for latency comparisons; a rate comparison uses events and trials"
                )
            if (self.events is None) != (self.trials is None):
                raise ValueError("a rate comparison's queries come in pairs: give both events and trials")
        elif self.events is not None or self.trials is not None:
            raise ValueError(
                "events and trials are for rate comparisons; a latency comparison uses histogram"
            )
        for name in ("events", "trials", "histogram", "label", "canary", "baseline"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"{name} must not be empty")
        if self.canary == self.baseline:
            raise ValueError(f"canary and baseline must be different values of label {self.label!r}")
        if self.interval <= timedelta(0):
            raise ValueError("interval must be above 0")
        if self.scrape_interval <= timedelta(0):
            raise ValueError("scrape_interval must be above 0")
        self._check_windows()
        if self.segment_label is not None:
            for name in ("events", "trials", "histogram"):
                query = getattr(self, name)
                if query is not None and self.segment_label not in _grouping(query):
                    raise ValueError(
                        f"{name} must group by segment_label {self.segment_label!r}"
                        f" (sum by ({self.label}, {self.segment_label}) (...)) so the baseline can be"
                        " filtered to the candidate's segments"
                    )
        return self

    def _check_windows(self) -> None:
        """Each query's range holds two scrapes and reaches at most one scrape past the interval."""
        windows: dict[str, timedelta] = {}
        for name in ("events", "trials", "histogram"):
            query = getattr(self, name)
            for text in _RANGE.findall(query or ""):
                try:
                    window = parse_duration(text)
                except ValueError:
                    raise ValueError(f"{name}: range [{text}] is not a duration this plan reads") from None
                shown = f"{name}: range [{text}]"
                if window < 2 * self.scrape_interval:
                    raise ValueError(
                        f"{shown} holds fewer than two scrapes at scrape_interval "
                        f"{format_duration(self.scrape_interval)}, so increase() reads no data; "
                        f"use [{format_duration(self.interval + self.scrape_interval)}]"
                    )
                if window > self.interval + self.scrape_interval:
                    raise ValueError(
                        f"{shown} is longer than interval {format_duration(self.interval)} plus one scrape"
                        f" ({format_duration(self.scrape_interval)}): consecutive intervals would count"
                        " the same events twice"
                    )
                if window < self.interval:
                    raise ValueError(
                        f"{shown} is shorter than interval {format_duration(self.interval)}: the events"
                        " between windows would never be counted"
                    )
                windows[name] = window
        if len(set(windows.values())) > 1:
            shown = ", ".join(f"{name} [{format_duration(w)}]" for name, w in windows.items())
            raise ValueError(f"the queries' ranges differ ({shown}): their counts would not match")

    @property
    def window(self) -> timedelta | None:
        """The range of the comparison's queries (None: no live queries, or none with a range)."""
        for query in self.live_queries:
            for text in _RANGE.findall(query):
                return parse_duration(text)
        return None

    @property
    def count_scale(self) -> float:
        """How many counts one real event reads as: increase() extrapolates the samples in its range
        (which span the range less one scrape, at most the interval) to the whole range."""
        window = self.window
        if window is None:
            return 1.0
        seen = min(self.interval, window - self.scrape_interval)
        return window / seen

    @property
    def live_queries(self) -> tuple[str, ...]:
        """The PromQL range queries that supply this comparison's samples (empty: none given)."""
        if self.kind is ComparisonKind.RATE:
            return (self.events, self.trials) if self.events and self.trials else ()
        return (self.histogram,) if self.histogram else ()

    @property
    def latency_quantile(self) -> float:
        """The quantile a latency comparison compares (0.95 unless the plan says otherwise)."""
        return 0.95 if self.quantile is None else self.quantile


# A PromQL range selector: [1m], [75s] (a subquery's [1h:1m] reads its range only).
_RANGE = re.compile(r"\[\s*([0-9][0-9a-z.]*)\s*(?::[^\]]*)?\]")
_GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")


def _grouping(query: str) -> set[str]:
    """The labels a query groups by, from every ``by (...)`` clause in it."""
    return {label.strip() for clause in _GROUPING.findall(query) for label in clause.split(",")}


class Gate(_Frozen):
    """One row of a seed metric table, in one stage."""

    metric: MetricId  # a Metric id
    target: Threshold | None = None
    alert: Threshold | None = None
    # Reported, never decides (the seed's "Monitor:" and "Track:" rows).
    monitor_only: bool = False
    note: str = ""  # the seed's words for monitor-only rows, e.g. "Growth trend"
    # Also compare the candidate with the stable version (at steps that split traffic between them).
    comparison: GateComparison | None = None


class GateTable(_Frozen):
    """A named table of gates, as the seed groups them (Technical Metrics, Cohort Analysis, ...)."""

    name: str
    gates: tuple[Gate, ...]


class TrafficStep(_Frozen):
    """One traffic weight within a stage, held for at least ``bake`` before the next step."""

    weight: Number = Field(ge=0, le=100)  # percent of traffic to the candidate
    bake: Duration = timedelta(0)  # zero: no hold before the next step

    @field_validator("bake", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class Split(_Frozen):
    ios: Number = Field(ge=0, le=100)
    android: Number = Field(ge=0, le=100)


Percent = Annotated[Number, Field(ge=0, le=100)]
# More users than people on Earth is a typo, not an audience.
MAX_AUDIENCE = 10_000_000_000


class Audience(_Frozen):
    """Who is in a stage: a selected cohort or a share of users."""

    kind: Literal["cohort", "percentage"]
    size: Annotated[Whole, Field(ge=1, le=MAX_AUDIENCE)] | None = None  # users, as the seed estimates them
    criteria: tuple[str, ...] = ()  # cohort selection criteria
    profile: tuple[str, ...] = ()
    include_segments: tuple[str, ...] = ()
    exclude_segments: tuple[str, ...] = ()
    platform_split: Split | None = None
    new_vs_existing: tuple[Percent, Percent] | None = None  # percent new, percent existing


class FeatureState(StrEnum):
    ENABLED = "enabled"
    LIMITED = "limited"  # on, in a reduced form (social sharing logging-only in beta)
    DISABLED = "disabled"


class Feature(_Frozen):
    state: FeatureState
    note: str = ""


class CriterionKind(StrEnum):
    METRICS = "metrics"  # judged from gate verdicts
    WINDOW = "window"  # "no critical issues for 48 hours": a clean window of an event metric
    COUNT = "count"  # "<5 critical bugs reported"
    MANUAL = "manual"  # a person signs off (positive feedback, support volume manageable)
    DRILL = "drill"  # "multi-region failover testing": a passed drill report committed during the stage


# The drills a drill criterion can name (the runbooks and their report folders under reports/drills/).
DRILLS = ("region-failover", "backup-restore")


class Criterion(_Frozen):
    """A go/no-go criterion."""

    id: SafeId
    text: str  # the seed's words
    kind: CriterionKind
    # METRICS: the gate tables (by name) whose gates must all meet target.
    tables: tuple[str, ...] = ()
    # WINDOW / COUNT: the metric counted, the bound, and the window.
    metric: MetricId | None = None
    threshold: Threshold | None = None
    window: Duration | None = None
    # MANUAL: who signs off.
    owners: tuple[str, ...] = ()
    # DRILL: the drill whose newest report must have passed, within ``window`` and since the stage began.
    drill: str | None = None

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta | None:
        return None if value is None else positive_duration(value)


FeatureName = Annotated[str, BeforeValidator(feature_name)]  # a flag name, like a metric id


class Stage(_Frozen):
    id: SafeId  # beta, limited, medium, majority, full
    name: str
    audience: Audience
    steps: tuple[TrafficStep, ...]
    min_duration: Duration
    features: dict[FeatureName, Feature] = Field(default_factory=dict)
    tables: tuple[GateTable, ...] = ()
    go: tuple[Criterion, ...] = ()
    no_go: tuple[Criterion, ...] = ()
    # Time allowed to get back to the stable version from this stage.
    rollback_objective: Duration

    @field_validator("min_duration", "rollback_objective", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return positive_duration(value)

    @property
    def gates(self) -> tuple[Gate, ...]:
        return tuple(gate for table in self.tables for gate in table.gates)


class Trigger(_Frozen):
    """An automatic rollback trigger: the condition, held for ``window``, rolls back."""

    id: SafeId
    text: str  # the seed's words
    metric: MetricId
    threshold: Threshold
    window: Duration  # zero means immediately

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


class BackupObjective(_Frozen):
    kind: Literal["incremental", "full"]
    every: Duration
    retention: Duration

    @field_validator("every", "retention", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return positive_duration(value)


class DisasterRecovery(_Frozen):
    regions: tuple[str, ...]
    primary: str
    rto: Duration  # time to recover service in the secondary region
    rpo: Duration  # data loss allowed: the newest backup's age
    drill_every: Duration
    verify_tables: tuple[str, ...] = ()  # tables a restore drill checks

    @field_validator("rto", "rpo", "drill_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return positive_duration(value)


class Objectives(_Frozen):
    backups: tuple[BackupObjective, ...]
    disaster_recovery: DisasterRecovery


class Notifications(_Frozen):
    slack_webhook_env: str | None = None  # the variable holding the webhook URL; never the URL itself
    pagerduty_routing_key_env: str | None = None


class Plan(_Frozen):
    """A whole rollout plan. ``stages`` are in rollout order."""

    name: str
    service: str
    decision_authority: tuple[str, ...]  # who may decide manual gates and rollbacks (CODEOWNERS)
    metrics: tuple[Metric, ...]
    stages: tuple[Stage, ...]
    triggers: tuple[Trigger, ...]
    objectives: Objectives
    notifications: Notifications = Notifications()
    # The feature flags a rolled-back stack serves: what the stable version runs with. A plan
    # feature not named here is disabled after a rollback.
    stable_features: dict[str, Feature] = Field(default_factory=dict)

    def stable_feature_set(self) -> dict[str, Feature]:
        """Every feature the stages name, at its stable state (``disabled`` unless listed)."""
        names = {name for stage in self.stages for name in stage.features} | set(self.stable_features)
        off = Feature(state=FeatureState.DISABLED)
        return {name: self.stable_features.get(name, off) for name in sorted(names)}

    def metric(self, metric_id: str) -> Metric:
        for metric in self.metrics:
            if metric.id == metric_id:
                return metric
        raise KeyError(metric_id)

    def stage(self, stage_id: str) -> Stage:
        """The stage called ``stage_id``; else ``UnknownStage``, a PlanError naming the plan's stages."""
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise UnknownStage(self, stage_id)

    def stage_index(self, stage_id: str) -> int:
        return [stage.id for stage in self.stages].index(stage_id)
