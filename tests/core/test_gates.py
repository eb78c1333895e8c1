"""Gate verdicts: one behaviour per row, literal expected verdicts and reasons."""

from __future__ import annotations

from datetime import datetime

import pytest
from core_plans import T0, at, gate, metric

from rollout_policies.core import Measurement, evaluate_gate
from rollout_policies.plan.model import Gate, Metric

CRASH = metric("crash_rate")
LOAD = metric("app_load_time", "s")
RETENTION = metric("retention_7d", evaluable_after="7d")
CRASH_GATE = gate("crash_rate", "< 1", "> 2")
LOAD_GATE = gate("app_load_time", "< 3", "> 5")
NOW = at(hours=30)


def judge(g: Gate, m: Metric, measurement: Measurement | None, now: datetime = NOW) -> tuple[str, str]:
    result = evaluate_gate(g, m, measurement, now=now, stage_started_at=T0, table="Technical Metrics")
    return result.verdict.value, result.reason


@pytest.mark.parametrize(
    ("case", "g", "m", "measurement", "expected"),
    [
        (
            "value inside target",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 0.4, at(hours=29, minutes=55)),
            ("meets_target", "0.4% meets target < 1"),
        ),
        (
            "value between target and alert",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 1.5, at(hours=29, minutes=55)),
            ("between", "1.5% misses target < 1, alert > 2 not crossed"),
        ),
        (
            "value exactly on the alert bound is not beyond it",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 2.0, at(hours=29, minutes=55)),
            ("between", "2% misses target < 1, alert > 2 not crossed"),
        ),
        (
            "value beyond the alert",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 2.5, at(hours=29, minutes=55)),
            ("beyond_alert", "2.5% crosses alert > 2"),
        ),
        (
            "seconds unit shown beside the value",
            LOAD_GATE,
            LOAD,
            Measurement.ok("app_load_time", 6, at(hours=29, minutes=59)),
            ("beyond_alert", "6s crosses alert > 5"),
        ),
        (
            "missing measurement",
            CRASH_GATE,
            CRASH,
            None,
            ("no_data", "no measurement of crash_rate"),
        ),
        (
            "source answered with no data",
            CRASH_GATE,
            CRASH,
            Measurement.no_data("crash_rate", NOW, "empty vector"),
            ("no_data", "source returned no data: empty vector"),
        ),
        (
            "source unreachable",
            CRASH_GATE,
            CRASH,
            Measurement.error("crash_rate", NOW, "connection refused to 127.0.0.1:9090"),
            ("error", "source error: connection refused to 127.0.0.1:9090"),
        ),
        (
            "stale measurement older than max_age",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 0.4, at(hours=29, minutes=40)),
            ("no_data", "stale: observed 20m ago, max age 15m"),
        ),
        (
            "measurement exactly max_age old is still fresh",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 0.4, at(hours=29, minutes=45)),
            ("meets_target", "0.4% meets target < 1"),
        ),
        (
            "measurement from the future",
            CRASH_GATE,
            CRASH,
            Measurement.ok("crash_rate", 0.4, at(hours=31)),
            ("error", "observed at 2026-11-21T16:00:00Z, after now (2026-11-21T15:00:00Z): clocks disagree"),
        ),
        (
            "metric not yet evaluable in the stage",
            gate("retention_7d", "> 60", "< 50"),
            RETENTION,
            Measurement.ok("retention_7d", 70, NOW),
            ("not_yet_evaluable", "evaluable 1w into the stage; 1d 6h so far"),
        ),
        (
            "monitor-only gate never decides, whatever its value",
            gate("daily_active_users", None, None, monitor_only=True, note="Growth trend"),
            metric("daily_active_users", "users"),
            Measurement.ok("daily_active_users", 900, NOW),
            ("monitor", "monitor only (Growth trend): 900 users"),
        ),
        (
            "monitor-only gate with no data is still monitor",
            gate("daily_active_users", None, None, monitor_only=True, note="Growth trend"),
            metric("daily_active_users", "users"),
            None,
            ("monitor", "monitor only (Growth trend): no data"),
        ),
        (
            "alert-only gate within its alert meets target",
            gate("crash_rate", None, "> 2"),
            CRASH,
            Measurement.ok("crash_rate", 1.5, NOW),
            ("meets_target", "1.5% within alert > 2"),
        ),
        (
            "target-only gate that misses is between",
            gate("crash_rate", "< 1", None),
            CRASH,
            Measurement.ok("crash_rate", 9, NOW),
            ("between", "9% misses target < 1"),
        ),
        (
            "higher-is-better gate below its alert",
            gate("crash_rate", "> 85", "< 75"),
            CRASH,
            Measurement.ok("crash_rate", 70, NOW),
            ("beyond_alert", "70% crosses alert < 75"),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "-",
)
def test_gate_verdict(
    case: str, g: Gate, m: Metric, measurement: Measurement | None, expected: tuple[str, str]
) -> None:
    assert judge(g, m, measurement) == expected


def test_verdict_carries_value_thresholds_and_unit() -> None:
    result = evaluate_gate(
        LOAD_GATE, LOAD, Measurement.ok("app_load_time", 4, NOW), now=NOW, stage_started_at=T0, table="Tech"
    )
    assert (
        result.table,
        result.metric,
        result.value,
        str(result.target),
        str(result.alert),
        result.unit,
    ) == (
        "Tech",
        "app_load_time",
        4.0,
        "< 3",
        "> 5",
        "s",
    )


def test_retention_becomes_evaluable_once_its_time_has_passed() -> None:
    measurement = Measurement.ok("retention_7d", 70, at(days=7))
    assert judge(gate("retention_7d", "> 60", "< 50"), RETENTION, measurement, now=at(days=7)) == (
        "meets_target",
        "70% meets target > 60",
    )


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="now needs a time zone"):
        evaluate_gate(CRASH_GATE, CRASH, None, now=datetime(2026, 11, 21), stage_started_at=T0)


@pytest.mark.parametrize(
    ("g", "gating"),
    [
        (gate("daily_active_users", None, None, monitor_only=True), False),
        (CRASH_GATE, True),
    ],
)
def test_only_monitor_only_gates_are_not_gating(g: Gate, gating: bool) -> None:
    assert evaluate_gate(g, CRASH, None, now=NOW, stage_started_at=T0).gating is gating
