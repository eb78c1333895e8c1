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


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything one evaluation reads besides the plan and "now".

    ``measurements`` may hold several measurements per metric (a history); the newest one is the
    metric's current value, the whole series feeds windows and rollback triggers.
    ``signoffs`` are the ids of manual criteria a person has signed off.
    """

    measurements: tuple[Measurement, ...] = ()
    signoffs: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, measurements: Iterable[Measurement], signoffs: Iterable[str] = ()) -> Evidence:
        return cls(tuple(measurements), frozenset(signoffs))

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
