"""The provider interface, shared failure types, bounded retries, and the judgement of one reading.

A provider turns a metric source into a ``Measurement``. It never raises through ``query``: a failed
query is a measurement with phase ``error``, an empty or stale one a measurement with phase
``no_data``. Each backend hides its client library behind a one-method seam that raises
``QueryFailed`` (or ``TransientQueryFailure`` for what is worth retrying), so tests can pass a fake.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar, runtime_checkable

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from rollout_policies.core.measurement import ComparisonSample, Measurement
from rollout_policies.plan.model import GateComparison, MetricSource

DEFAULT_TIMEOUT = 5.0  # seconds per request
DEFAULT_ATTEMPTS = 3  # one try and two retries of transient failures
DEFAULT_MAX_AGE = timedelta(minutes=15)  # a comparison's newest sample may be this old

T = TypeVar("T")


@runtime_checkable
class MetricProvider(Protocol):
    """A metric backend: answer one source's query at ``now``, and say whether it is reachable."""

    name: str

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        """The source's value at ``now``; failures and missing data are measurements, never raised."""
        ...

    def is_online(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ComparisonFetch:
    """One comparison gate's per-version samples, and how fetching them went.

    ``measurement`` judges the fetch like any other query: phase ``ok`` (value: how many samples),
    ``no_data`` (no series, no interval with both versions, or the newest older than ``max_age``)
    or ``error`` (the backend failed or answered something unreadable). ``samples`` are empty unless
    something was read; stale samples are kept, because a regression they show stays valid.
    """

    metric: str
    measurement: Measurement
    samples: tuple[ComparisonSample, ...] = ()


@runtime_checkable
class ComparisonProvider(Protocol):
    """A backend that also answers comparison gates: the candidate's and the stable version's counts.

    Like ``query``, ``compare`` never raises: a failure is the fetch's measurement.
    """

    name: str

    def compare(
        self,
        settings: GateComparison,
        now: datetime,
        *,
        metric: str,
        since: datetime | None = None,
        max_age: timedelta = DEFAULT_MAX_AGE,
        exclude_segments: Sequence[str] = (),
    ) -> ComparisonFetch:
        """The per-version samples of ``metric`` from ``since`` (the stage start) to ``now``, without
        the audience segments the stage leaves out (like is compared with like)."""
        ...


class QueryFailed(Exception):
    """The backend answered with an error, or its answer cannot be read (bad query, bad JSON)."""


class TransientQueryFailure(QueryFailed):
    """Worth another try: connection refused, timeout, HTTP 5xx or 429."""


class NoValues(Exception):  # a finding, not a fault (Flagger's "no values found")
    """The backend answered, with nothing for this query."""


@dataclass(frozen=True, slots=True)
class Reading:
    """A raw value and when it was true, before NaN and staleness are judged."""

    value: float | None
    observed_at: datetime


def as_utc(moment: datetime) -> datetime:
    """Naive times are taken as UTC (databases and JSON APIs often drop the zone)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def with_retries(call: Callable[[], T], *, attempts: int, wait_max: float = 1.0) -> T:
    """``call()``, retried on ``TransientQueryFailure`` up to ``attempts`` tries in all."""
    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=0.1, max=wait_max),
        retry=retry_if_exception_type(TransientQueryFailure),
        reraise=True,
    )
    return retrying(call)


def measure(
    provider: str,
    metric: str,
    source: MetricSource,
    now: datetime,
    read: Callable[[], Reading],
    *,
    attempts: int,
) -> Measurement:
    """Run ``read`` with bounded retries and judge its reading into a measurement.

    No value, NaN or infinity, and a reading older than ``source.max_age`` are ``no_data``; every
    failure, expected or not, is ``error`` with a message (an evaluation loop must never crash on
    one bad source, and must never read a failure as a pass).
    """
    now = as_utc(now)
    label = metric or source.query or provider
    try:
        reading = with_retries(read, attempts=attempts)
    except NoValues as finding:
        return Measurement.no_data(label, now, f"{provider}: {finding}")
    except TransientQueryFailure as failure:
        return Measurement.error(label, now, f"{provider}: {failure} (after {attempts} tries)")
    except QueryFailed as failure:
        return Measurement.error(label, now, f"{provider}: {failure}")
    except Exception as failure:  # a bug or an unforeseen library error: still data, not a crash
        return Measurement.error(label, now, f"{provider}: {type(failure).__name__}: {failure}")
    observed_at = as_utc(reading.observed_at)
    if reading.value is None:
        return Measurement.no_data(label, now, f"{provider}: the value is empty (null)")
    if isinstance(reading.value, bool) or not math.isfinite(reading.value):
        return Measurement.no_data(label, now, f"{provider}: the value is {reading.value} (not a number)")
    age = now - observed_at
    if age > source.max_age:
        return Measurement.no_data(
            label,
            now,
            f"{provider}: stale: newest value is from {observed_at.isoformat()},"
            f" older than max_age {source.max_age}",
        )
    return Measurement.ok(label, float(reading.value), observed_at)


def to_float(raw: object, what: str) -> float | None:
    """A number from JSON, SQL or text; ``None`` stays ``None`` (no data); anything else fails."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise QueryFailed(f"{what} is a boolean ({raw}), not a number")
    if isinstance(raw, int | float):
        return float(raw)
    try:
        return float(str(raw))  # Decimal from SQL, "12.5" or "NaN" from an API
    except ValueError:
        raise QueryFailed(f"{what} is not a number: {str(raw)[:80]!r}") from None
