"""Drill results read from committed drill reports, as the drills write them (runbooks/report.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from rollout_policies.core import DrillResult
from rollout_policies.providers.drill_reports import read_drill_results
from runbooks.report import DrillReport, ObjectiveRecord, StepRecord, StepStatus, write_report

T0 = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)


def report(drill: str, status: StepStatus, started: datetime, *, executed: bool = True) -> DrillReport:
    return DrillReport(
        drill=drill,
        executed=executed,
        started_at=started,
        finished_at=started + timedelta(minutes=3),
        steps=(StepRecord(name="dns-failover", status=status, started_at=started, seconds=1.0),),
        objectives=(ObjectiveRecord(name="time to recovery (RTO)", limit_seconds=1800, measured_seconds=42),),
    )


def test_each_written_report_is_a_drill_result_with_its_verdict_and_finish(tmp_path: Path) -> None:
    json_path, _ = write_report(report("region-failover", StepStatus.PASSED, T0), tmp_path)
    write_report(report("region-failover", StepStatus.FAILED, T0 + timedelta(days=1)), tmp_path)
    write_report(report("backup-restore", StepStatus.PLANNED, T0, executed=False), tmp_path)

    results = sorted(read_drill_results(tmp_path), key=lambda r: (r.drill, r.finished_at))

    assert results == [
        DrillResult(
            "backup-restore",
            "dry-run",
            T0 + timedelta(minutes=3),
            str(tmp_path / "backup-restore" / json_path.name),
        ),
        DrillResult("region-failover", "passed", T0 + timedelta(minutes=3), str(json_path)),
        DrillResult(
            "region-failover",
            "failed",
            T0 + timedelta(days=1, minutes=3),
            str(json_path.with_name("20261202T063000Z.json")),
        ),
    ]


def test_an_unreadable_report_is_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "region-failover"
    folder.mkdir()
    (folder / "broken.json").write_text("{not json")
    (folder / "other.json").write_text(
        '{"drill": "backup-restore", "verdict": "passed", "finished_at": "2026-12-01T06:30:00Z"}'
    )

    assert read_drill_results(tmp_path) == ()
