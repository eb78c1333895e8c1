"""The HTML drill report: objectives against the plan and the steps, rendered in headless Chromium."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from headless import assert_self_contained, figures, plots_counted_by_the_page, rendered_dom, script_errors

from rollout_policies.pages import drills
from runbooks.report import DrillReport, ObjectiveRecord, StepRecord, StepStatus

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def report(rto_seconds: float | None = 99.0) -> DrillReport:
    steps = [
        ("check-preconditions", 0.0, 2.1, StepStatus.PASSED),
        ("find-latest-backup", 2.1, 1.4, StepStatus.PASSED),
        ("restore-to-scratch", 3.5, 95.0, StepStatus.PASSED),
        ("verify-rows", 98.5, 4.0, StepStatus.FAILED),
        ("drop-scratch", 102.5, 3.0, StepStatus.SKIPPED),
    ]
    return DrillReport(
        drill="backup-restore",
        executed=True,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=106),
        steps=tuple(
            StepRecord(name=name, status=status, started_at=T0 + timedelta(seconds=at), seconds=took)
            for name, at, took, status in steps
        ),
        objectives=(
            ObjectiveRecord(name="RTO (restore time)", limit_seconds=1800, measured_seconds=rto_seconds),
            ObjectiveRecord(name="RPO (backup age)", limit_seconds=3600, measured_seconds=4000),
        ),
        notes=("restored into a scratch database",),
    )


def test_the_page_shows_each_objective_against_its_limit(tmp_path: Path) -> None:
    html = drills.render(report(rto_seconds=None))
    assert "Verdict: FAILED" in html
    assert "RTO (restore time)" in html and "not measured" in html
    assert "66.7 min (missed)" in html  # the RPO bar: 4000 s against a 60 min limit
    assert "limit 60 min" in html


def test_the_page_renders_its_plots_in_headless_chromium(tmp_path: Path) -> None:
    page = drills.write(report(), tmp_path / "drill.html")
    assert_self_contained(page.read_text())

    dom = rendered_dom(page)

    assert script_errors(dom) == ""
    shown = figures(dom)
    assert sorted(shown) == ["plot-drill-1", "plot-drill-2"]
    assert plots_counted_by_the_page(dom) == 2
    objectives, steps = shown["plot-drill-1"], shown["plot-drill-2"]
    assert "<path" in objectives and "1.65 min (met)" in objectives
    for name in ("check-preconditions", "restore-to-scratch", "drop-scratch"):
        assert name in steps
