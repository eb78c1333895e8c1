"""Drill reports: verdicts, objectives, JSON and Markdown, and commits in a real git repository."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runbooks.report import (
    DrillRecorder,
    DrillReport,
    ObjectiveRecord,
    StepFailed,
    StepRecord,
    StepSkipped,
    StepStatus,
    Verdict,
    commit_report,
    write_report,
)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def report(*statuses: StepStatus, measured: float | None = 60.0, executed: bool = True) -> DrillReport:
    return DrillReport(
        drill="backup-restore",
        executed=executed,
        started_at=T0,
        finished_at=T0 + timedelta(minutes=2),
        steps=tuple(
            StepRecord(name=f"s{i}", status=s, started_at=T0, seconds=1.5) for i, s in enumerate(statuses)
        ),
        objectives=(
            ObjectiveRecord(name="RTO (restore time)", limit_seconds=300, measured_seconds=measured),
        ),
    )


@pytest.mark.parametrize(
    ("statuses", "measured", "verdict", "exit_code"),
    [
        ((StepStatus.PASSED, StepStatus.PASSED), 60.0, Verdict.PASSED, 0),
        ((StepStatus.PASSED, StepStatus.SKIPPED), 60.0, Verdict.PASSED, 0),
        ((StepStatus.PASSED, StepStatus.FAILED), 60.0, Verdict.FAILED, 1),
        ((StepStatus.PASSED,), 301.0, Verdict.FAILED, 1),
        ((StepStatus.PASSED, StepStatus.INCONCLUSIVE), 60.0, Verdict.INCONCLUSIVE, 3),
        ((StepStatus.PASSED,), None, Verdict.INCONCLUSIVE, 3),
    ],
)
def test_the_verdict_and_exit_status(
    statuses: tuple[StepStatus, ...], measured: float | None, verdict: Verdict, exit_code: int
) -> None:
    result = report(*statuses, measured=measured)

    assert result.verdict is verdict
    assert result.exit_code == exit_code


def test_a_dry_run_is_its_own_verdict_and_exits_zero() -> None:
    result = report(StepStatus.PASSED, StepStatus.PLANNED, measured=None, executed=False)

    assert result.verdict is Verdict.DRY_RUN
    assert result.exit_code == 0


def test_json_carries_the_verdict_and_whether_each_objective_was_met() -> None:
    data = json.loads(report(StepStatus.PASSED, measured=400.0).to_json())

    assert data["verdict"] == "failed"
    assert data["objectives"] == [
        {"name": "RTO (restore time)", "limit_seconds": 300.0, "measured_seconds": 400.0, "met": False}
    ]
    assert data["steps"][0]["status"] == "passed"


def test_markdown_shows_a_missed_objective_and_each_step() -> None:
    text = report(StepStatus.PASSED, StepStatus.SKIPPED, measured=400.0).to_markdown()

    assert "| RTO (restore time) | 5.0 min | 6.7 min | **MISSED** |" in text
    assert "| s1 | skipped | 1.50 s |" in text
    assert "- verdict: **failed**" in text


def test_the_recorder_times_steps_and_records_failures_and_skips() -> None:
    ticks = iter([0.0, 2.5, 20.0, 21.0, 30.0, 30.0])
    rec = DrillRecorder("backup-restore", True, lambda: T0, lambda: next(ticks))

    with rec.step("first") as step:
        step.detail = "ok"
    with rec.step("second"):
        raise StepSkipped("no cluster")
    with pytest.raises(StepFailed, match="ValueError: boom"), rec.step("third"):
        raise ValueError("boom")

    assert [(s.name, s.status, s.seconds) for s in rec.steps] == [
        ("first", StepStatus.PASSED, 2.5),
        ("second", StepStatus.SKIPPED, 1.0),
        ("third", StepStatus.FAILED, 0.0),
    ]
    assert rec.steps[1].detail == "no cluster"


def test_the_recorder_refuses_a_step_that_is_not_in_the_drills_list() -> None:
    rec = DrillRecorder("region-failover", True, lambda: T0, known_steps=frozenset({"dns-failover"}))

    with pytest.raises(ValueError, match="not in the drill's step list"), rec.step("dns-flip"):
        pass


def test_reports_are_written_as_json_and_markdown_and_committed_alone(git_repo: Path) -> None:
    (git_repo / "unrelated.txt").write_text("someone else's work in progress\n")
    subprocess.run(["git", "add", "unrelated.txt"], cwd=git_repo, check=True)

    paths = write_report(report(StepStatus.PASSED), git_repo / "drills")
    commit = commit_report(paths, "drill backup-restore: passed")

    assert [p.relative_to(git_repo).as_posix() for p in paths] == [
        "drills/backup-restore/20261125T100000Z.json",
        "drills/backup-restore/20261125T100000Z.md",
    ]
    shown = subprocess.run(
        ["git", "show", "--name-only", "--format=%s", commit],
        cwd=git_repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "unrelated.txt" not in shown
    assert "drills/backup-restore/20261125T100000Z.json" in shown
    assert not list((git_repo / "drills").rglob("*.tmp"))
