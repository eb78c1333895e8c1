"""Measurements and evidence: what the core accepts, and which value is current."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from core_plans import at

from rollout_policies.core import Evidence, Measurement, Phase
from rollout_policies.core.durations import span


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Measurement("crash_rate", Phase.OK, None, at()), "phase ok needs a value"),
        (lambda: Measurement("crash_rate", Phase.OK, float("nan"), at()), "value must be a finite number"),
        (lambda: Measurement("crash_rate", Phase.OK, True, at()), "value must be a finite number"),
        (lambda: Measurement.ok("crash_rate", 1, datetime(2026, 11, 20)), "observed_at needs a time zone"),
        (lambda: Measurement.ok("m", 0, at(), since=at(hours=1)), "since is after observed_at"),
    ],
    ids=["ok without value", "nan", "bool", "naive time", "since after observed_at"],
)
def test_invalid_measurement_is_rejected(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def test_error_measurement_needs_no_value() -> None:
    assert Measurement.error("crash_rate", at(), "refused").value is None


def test_latest_is_the_newest_observation_whatever_the_order() -> None:
    evidence = Evidence.of([Measurement.ok("m", 2, at(minutes=5)), Measurement.ok("m", 1, at(minutes=1))])
    assert evidence.latest("m") == Measurement.ok("m", 2, at(minutes=5))


def test_history_is_oldest_first_and_per_metric() -> None:
    evidence = Evidence.of(
        [Measurement.ok("m", 2, at(minutes=5)), Measurement.ok("n", 9, at()), Measurement.ok("m", 1, at())]
    )
    assert [x.value for x in evidence.history("m")] == [1.0, 2.0]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(days=8, minutes=5), "8d 5m"),
        (timedelta(hours=30), "1d 6h"),
        (timedelta(seconds=59.9), "59s"),
        (timedelta(0), "0s"),
        (timedelta(hours=-3), "0s"),
    ],
    ids=["days and minutes", "hours over a day", "fractions dropped", "zero", "negative"],
)
def test_span_in_words(value: timedelta, text: str) -> None:
    assert span(value) == text


def test_evidence_until_keeps_what_was_observed_by_then() -> None:
    from rollout_policies.core.measurement import RateSample

    early, late = at(hours=1), at(hours=3)
    evidence = Evidence.of(
        [Measurement.ok("crash_rate", 0.1, early), Measurement.ok("crash_rate", 0.9, late)],
        ["signed"],
        samples=[
            RateSample("crash_rate", early, 1, 100, 10, 1000),
            RateSample("crash_rate", late, 9, 100, 10, 1000),
        ],
    )

    then = evidence.until(at(hours=2))

    assert [m.value for m in then.measurements] == [0.1]
    assert [s.observed_at for s in then.samples] == [early]
    assert then.signoffs == frozenset({"signed"})
    assert evidence.until(late) == evidence
