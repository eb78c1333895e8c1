"""Go/no-go criteria: metrics tables, clean windows, counts and manual sign-offs."""

from __future__ import annotations

from datetime import datetime

import pytest
from core_plans import (
    GO_BUGS,
    GO_CLEAN_48H,
    GO_FEEDBACK,
    GO_TECHNICAL,
    METRICS,
    NO_GO_CRASH,
    NO_GO_SENTIMENT,
    T0,
    at,
    ok,
)

from rollout_policies.core import DrillResult, Evidence, Measurement, Verdict, evaluate_criterion
from rollout_policies.core.gates import GateVerdict
from rollout_policies.plan.model import Criterion

METRIC_MAP = {m.id: m for m in METRICS}


def verdict(metric_id: str, kind: Verdict, table: str = "Technical Metrics") -> GateVerdict:
    return GateVerdict(table, metric_id, metric_id, kind, None, None, None, "%", "")


def judge(
    criterion: Criterion,
    *,
    no_go: bool = False,
    gates: tuple[GateVerdict, ...] = (),
    measurements: tuple[Measurement, ...] = (),
    signoffs: tuple[str, ...] = (),
    now: datetime,
) -> tuple[str, str]:
    result = evaluate_criterion(
        criterion,
        no_go=no_go,
        gate_verdicts=gates,
        metrics=METRIC_MAP,
        evidence=Evidence.of(measurements, signoffs),
        now=now,
        stage_started_at=T0,
    )
    return result.status.value, result.reason


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        (
            (verdict("crash_rate", Verdict.MEETS_TARGET), verdict("app_load_time", Verdict.MEETS_TARGET)),
            ("met", "all 2 gates meet target in Technical Metrics"),
        ),
        (
            (verdict("crash_rate", Verdict.BETWEEN), verdict("app_load_time", Verdict.MEETS_TARGET)),
            ("not_met", "target missed: crash_rate"),
        ),
        (
            (verdict("crash_rate", Verdict.NO_DATA), verdict("app_load_time", Verdict.MEETS_TARGET)),
            ("unknown", "cannot judge yet: crash_rate"),
        ),
        (
            (verdict("crash_rate", Verdict.ERROR), verdict("app_load_time", Verdict.NOT_YET_EVALUABLE)),
            ("unknown", "cannot judge yet: crash_rate, app_load_time"),
        ),
        (
            (
                verdict("crash_rate", Verdict.MEETS_TARGET),
                verdict("daily_active_users", Verdict.MONITOR),
                verdict("app_load_time", Verdict.BEYOND_ALERT, table="Other"),
            ),
            ("met", "all 1 gates meet target in Technical Metrics"),
        ),
    ],
    ids=["all meet", "one between", "one missing", "error and not yet evaluable", "other tables ignored"],
)
def test_metrics_go_criterion(gates: tuple[GateVerdict, ...], expected: tuple[str, str]) -> None:
    assert judge(GO_TECHNICAL, gates=gates, now=at(days=1)) == expected


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        ((verdict("crash_rate", Verdict.BEYOND_ALERT),), ("met", "beyond alert: crash_rate")),
        ((verdict("crash_rate", Verdict.BETWEEN),), ("not_met", "no gate beyond alert in Technical Metrics")),
        ((verdict("crash_rate", Verdict.NO_DATA),), ("unknown", "cannot judge yet: crash_rate")),
    ],
    ids=["beyond alert holds", "between does not hold", "no data unknown"],
)
def test_metrics_no_go_criterion(gates: tuple[GateVerdict, ...], expected: tuple[str, str]) -> None:
    assert judge(GO_TECHNICAL, no_go=True, gates=gates, now=at(days=1)) == expected


def test_metrics_criterion_naming_a_table_the_stage_lacks_is_rejected() -> None:
    with pytest.raises(ValueError, match="no gate table named Technical Metrics in the stage"):
        judge(GO_TECHNICAL, gates=(verdict("x", Verdict.MEETS_TARGET, table="Other"),), now=at(days=1))


@pytest.mark.parametrize(
    ("measurements", "expected"),
    [
        ((ok("critical_bugs", 4, at(days=3)),), ("met", "critical_bugs = 4: < 5 holds")),
        ((ok("critical_bugs", 5, at(days=3)),), ("not_met", "critical_bugs = 5: < 5 does not hold")),
        ((), ("unknown", "no measurement of critical_bugs")),
        (
            (ok("critical_bugs", 0, at(days=1, hours=23)),),
            ("unknown", "critical_bugs: stale (older than 1d)"),
        ),
        (
            (Measurement.error("critical_bugs", at(days=3), "tracker timeout"),),
            ("unknown", "critical_bugs: source error: tracker timeout"),
        ),
        (
            (ok("critical_bugs", 9, at(days=2)), ok("critical_bugs", 2, at(days=3))),
            ("met", "critical_bugs = 2: < 5 holds"),
        ),
    ],
    ids=["under bound", "on bound", "missing", "stale", "error", "newest counts"],
)
def test_count_criterion(measurements: tuple[Measurement, ...], expected: tuple[str, str]) -> None:
    assert judge(GO_BUGS, measurements=measurements, now=at(days=3)) == expected


def clean(*hours: float) -> tuple[Measurement, ...]:
    return tuple(ok("critical_issues", 0, at(hours=h)) for h in hours)


HOURLY_50H = clean(*range(0, 51))


@pytest.mark.parametrize(
    ("measurements", "now", "expected"),
    [
        (HOURLY_50H, at(hours=50), ("met", "critical_issues == 0 for the whole 2d (49 samples)")),
        (clean(*range(0, 21)), at(hours=20), ("not_met", "20h in stage, window is 2d")),
        (
            (*HOURLY_50H[:1], ok("critical_issues", 1, at(hours=1)), *HOURLY_50H[2:]),
            at(hours=50),
            ("met", "critical_issues == 0 for the whole 2d (49 samples)"),
        ),
        (
            (*HOURLY_50H[:30], ok("critical_issues", 1, at(hours=30)), *HOURLY_50H[31:]),
            at(hours=50),
            ("not_met", "critical_issues = 1 at 2026-11-21T15:00:00Z breaks == 0"),
        ),
        (
            clean(*range(0, 20), *range(25, 51)),
            at(hours=50),
            ("unknown", "critical_issues: window 2d not covered (gap of 6h, max age 1h)"),
        ),
        ((), at(hours=50), ("unknown", "critical_issues: window 2d not covered (gap of 2d, max age 1h)")),
        (
            tuple(Measurement.error("critical_issues", at(hours=h), "down") for h in range(0, 51)),
            at(hours=50),
            ("unknown", "critical_issues: window 2d not covered (gap of 2d, max age 1h)"),
        ),
        (
            (Measurement.ok("critical_issues", 0, at(hours=50), since=at(hours=2)),),
            at(hours=50),
            ("met", "critical_issues == 0 for the whole 2d (1 samples)"),
        ),
        (
            (Measurement.ok("critical_issues", 0, at(hours=50), since=at(hours=26)),),
            at(hours=50),
            ("unknown", "critical_issues: window 2d not covered (gap of 1d, max age 1h)"),
        ),
    ],
    ids=[
        "clean for the whole window",
        "not yet 48h in stage",
        "issue before the window does not count",
        "issue inside the window",
        "gap in the samples",
        "no samples",
        "only errors",
        "one count covering the whole window",
        "one count covering part of the window",
    ],
)
def test_window_criterion(
    measurements: tuple[Measurement, ...], now: datetime, expected: tuple[str, str]
) -> None:
    assert judge(GO_CLEAN_48H, measurements=measurements, now=now) == expected


@pytest.mark.parametrize(
    ("criterion", "no_go", "signoffs", "expected"),
    [
        (GO_FEEDBACK, False, (), ("pending_signoff", "waiting for sign-off by devops-lead or cto")),
        (GO_FEEDBACK, False, ("positive-feedback",), ("met", "signed off")),
        (
            GO_FEEDBACK,
            False,
            ("negative-sentiment",),
            ("pending_signoff", "waiting for sign-off by devops-lead or cto"),
        ),
        (NO_GO_SENTIMENT, True, (), ("pending_signoff", "waiting for sign-off by cto")),
        (NO_GO_SENTIMENT, True, ("negative-sentiment",), ("not_met", "signed off: checked, does not hold")),
    ],
    ids=["go pending", "go signed", "other sign-off", "no-go pending", "no-go cleared"],
)
def test_manual_criterion(
    criterion: Criterion, no_go: bool, signoffs: tuple[str, ...], expected: tuple[str, str]
) -> None:
    assert judge(criterion, no_go=no_go, signoffs=signoffs, now=at(days=1)) == expected


def test_count_no_go_criterion_holds_when_crash_rate_over_bound() -> None:
    assert judge(
        NO_GO_CRASH, no_go=True, measurements=(ok("crash_rate", 2.4, at(days=1)),), now=at(days=1)
    ) == (
        "met",
        "crash_rate = 2.4: > 2 holds",
    )


# --- drill criteria: the newest committed drill report of the stage --------------------------------

DRILL = Criterion.model_validate(
    {
        "id": "majority-failover-drill",
        "text": "Multi-region failover testing",
        "kind": "drill",
        "drill": "region-failover",
        "window": "7d",
    }
)


def judge_drill(*reports: DrillResult, now: datetime) -> tuple[str, str]:
    result = evaluate_criterion(
        DRILL,
        no_go=False,
        gate_verdicts=(),
        metrics=METRIC_MAP,
        evidence=Evidence.of((), drills=reports),
        now=now,
        stage_started_at=T0,
    )
    return result.status.value, result.reason


def drill(verdict: str, hours: float, name: str = "region-failover") -> DrillResult:
    return DrillResult(name, verdict, at(hours=hours), f"reports/drills/{name}/{hours}.json")


def test_a_drill_criterion_without_a_report_is_unknown() -> None:
    assert judge_drill(now=at(hours=1)) == ("unknown", "no region-failover drill report")


def test_a_passed_drill_in_the_stage_meets_the_criterion() -> None:
    status, reason = judge_drill(drill("passed", 2), now=at(hours=5))
    assert status == "met"
    assert reason.endswith(": passed (reports/drills/region-failover/2.json)")


def test_a_newer_failed_drill_outweighs_an_older_pass() -> None:
    status, reason = judge_drill(drill("passed", 2), drill("failed", 3), now=at(hours=5))
    assert (status, reason.split(": ")[-1].split(" (")[0]) == ("not_met", "failed")


def test_a_dry_run_or_another_drill_proves_nothing() -> None:
    reports = (drill("dry-run", 2), drill("passed", 2, name="backup-restore"))
    assert judge_drill(*reports, now=at(hours=5))[0] == "unknown"


def test_a_drill_from_before_the_stage_does_not_count() -> None:
    status, reason = judge_drill(drill("passed", -1), now=at(hours=1))
    assert status == "unknown"
    assert "from before this stage began" in reason


def test_a_drill_older_than_the_window_does_not_count() -> None:
    status, reason = judge_drill(drill("passed", 1), now=at(days=8))
    assert (status, reason.endswith("is older than 1w")) == ("unknown", True)


def test_a_drill_reported_after_now_is_not_seen_yet() -> None:
    assert judge_drill(drill("passed", 6), now=at(hours=5))[0] == "unknown"
