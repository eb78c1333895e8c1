"""The backup restore drill's checks of the pgBackRest repository (S3 on a moto server), and Velero.

moto stands in for S3 because it is the only AWS stand-in allowed here; the repository's files are
written as pgBackRest writes them (``drill_helpers.put_backup_sets``). The point-in-time restore
itself runs against real pgBackRest and PostgreSQL in tests/runbooks/test_pgbackrest_e2e.py. Velero
runs no server in this environment, so the Velero phase handling is tested through the drill's
``Velero`` seam with a recorded sequence of phases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from drill_helpers import PREFIX, STANZA, make_plan, now_utc, put_backup_sets

from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan
from runbooks.backup import TableFingerprint
from runbooks.backup_restore import (
    RestoreDrill,
    RestoreTarget,
    VeleroBackup,
    VeleroBounds,
    restore_finished,
    verification_problems,
)
from runbooks.pgbackrest import Repository
from runbooks.report import DrillRecorder, StepFailed, StepStatus, Verdict

pytestmark = pytest.mark.services


@dataclass
class RecordedVelero:
    """The Velero seam with a scripted sequence of Restore phases (no Velero server runs here)."""

    phases: list[str]
    backup: VeleroBackup | None = field(
        default_factory=lambda: VeleroBackup("daily-20261125", "Completed", now_utc(), ("markethub",))
    )
    restores: list[tuple[str, str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def latest_backup(self) -> VeleroBackup | None:
        return self.backup

    def create_restore(self, backup: str, namespace: str, scratch_namespace: str) -> str:
        self.restores.append((backup, namespace, scratch_namespace))
        return scratch_namespace

    def restore_phase(self, name: str) -> str:
        return self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]

    def delete_namespace(self, name: str) -> None:
        self.deleted.append(name)


@pytest.fixture
def drill(plan: Plan, s3: Any, bucket: str) -> Callable[..., RestoreDrill]:
    """The restore drill on moto's S3; keyword arguments (``plan``, ``velero``...) override its fields."""

    def make(velero: Any = None, plan: Plan = plan, source_dsn: str = "", **kwargs: Any) -> RestoreDrill:
        return RestoreDrill(
            plan=plan,
            target=RestoreTarget(
                repository=Repository(bucket, PREFIX, "us-east-1", STANZA), source_dsn=source_dsn
            ),
            s3=s3,
            velero=velero,
            velero_bounds=VeleroBounds(attempts=5, interval=0.01, deadline=5),
            **kwargs,
        )

    return make


def test_a_dry_run_checks_the_chain_and_the_ages_and_restores_nothing(
    drill: Callable[..., RestoreDrill], s3: Any, bucket: str
) -> None:
    labels = put_backup_sets(s3, bucket, 10, 1.5, 0.5)

    report = drill().run(execute=False)

    assert report.verdict is Verdict.DRY_RUN, report.to_markdown()
    assert labels[2] in report.step("check-backup-chain").detail
    assert report.step("restore-to-time").status is StepStatus.PLANNED
    assert report.step("mark-recovery-target").changes.startswith("the source database")


def test_a_deleted_incremental_fails_the_drill_with_the_set_it_named(
    drill: Callable[..., RestoreDrill], s3: Any, bucket: str
) -> None:
    labels = put_backup_sets(s3, bucket, 10, 1.5, 0.5, missing=(1,))

    report = drill().run(execute=False)

    step = report.step("check-backup-chain")
    assert step.status is StepStatus.FAILED
    assert step.detail == (
        f"backup chain broken: incremental backup {labels[1]} is gone from the repository "
        f"(no {labels[1]}/backup.manifest), and the newest backup {labels[2]} needs it"
    )
    assert report.verdict is Verdict.FAILED
    assert report.exit_code == 1


def test_a_backup_older_than_the_plan_allows_fails_the_drill(
    drill: Callable[..., RestoreDrill], s3: Any, bucket: str
) -> None:
    put_backup_sets(s3, bucket, 10, 3)

    report = drill().run(execute=False)

    step = report.step("check-backup-age")
    assert step.status is StepStatus.FAILED
    assert "newest incremental backup" in step.detail and "allowed: 1h15m" in step.detail
    assert report.verdict is Verdict.FAILED


def test_an_empty_repository_fails_the_drill(drill: Callable[..., RestoreDrill]) -> None:
    report = drill().run(execute=False)

    assert report.step("check-backup-chain").detail == "no backup in the repository (backup.info lists none)"
    assert report.verdict is Verdict.FAILED


def test_executing_needs_the_source_database(drill: Callable[..., RestoreDrill]) -> None:
    with pytest.raises(UserError, match="--source-dsn"):
        drill().run(execute=True)


def test_without_a_cluster_the_velero_step_is_skipped_not_passed(
    drill: Callable[..., RestoreDrill], s3: Any, bucket: str
) -> None:
    put_backup_sets(s3, bucket, 10, 0.5)

    report = drill(velero=None).run(execute=False)

    assert report.step("find-latest-velero-backup").status is StepStatus.SKIPPED


def test_a_failed_newest_velero_backup_fails_the_drill(
    drill: Callable[..., RestoreDrill], s3: Any, bucket: str
) -> None:
    put_backup_sets(s3, bucket, 10, 0.5)
    velero = RecordedVelero(["Completed"], backup=VeleroBackup("daily", "Failed", now_utc(), ()))

    report = drill(plan=make_plan(), velero=velero).run(execute=False)

    assert report.step("find-latest-velero-backup").status is StepStatus.FAILED
    assert velero.restores == []


def velero_restore(drill: RestoreDrill, velero: RecordedVelero) -> DrillRecorder:
    """Only the Velero restore step (the database part needs pgBackRest: the e2e test runs it)."""
    rec = DrillRecorder("backup-restore", True, now_utc)
    with pytest.raises(StepFailed) if "Failed" in velero.phases[-1] else _nothing():
        drill._velero_restore(rec, velero.backup)
    return rec


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def test_a_velero_restore_that_completes_passes(drill: Callable[..., RestoreDrill]) -> None:
    velero = RecordedVelero(["", "New", "InProgress", "Completed"])

    rec = velero_restore(drill(velero=velero), velero)

    assert rec.steps[0].status is StepStatus.PASSED
    assert velero.restores[0][:2] == ("daily-20261125", "markethub")
    assert velero.restores[0][2].startswith("drill-restore-")
    assert velero.deleted == [velero.restores[0][2]]


def test_a_velero_restore_phase_containing_failed_fails_the_drill(drill: Callable[..., RestoreDrill]) -> None:
    velero = RecordedVelero(["InProgress", "PartiallyFailed"])

    rec = velero_restore(drill(velero=velero), velero)

    assert rec.steps[0].status is StepStatus.FAILED
    assert "PartiallyFailed" in rec.steps[0].detail


def test_a_velero_restore_with_no_final_phase_is_inconclusive(drill: Callable[..., RestoreDrill]) -> None:
    velero = RecordedVelero([""])

    rec = velero_restore(drill(velero=velero), velero)

    assert rec.steps[0].status is StepStatus.INCONCLUSIVE


@pytest.mark.parametrize(
    ("phase", "finished"),
    [
        ("Completed", True),
        ("PartiallyFailed", True),
        ("FailedValidation", True),
        ("InProgress", False),
        ("", False),
    ],
)
def test_restore_phases_that_end_polling(phase: str, finished: bool) -> None:
    assert restore_finished(phase) is finished


def test_verification_names_each_table_that_differs() -> None:
    expected = {
        "orders": TableFingerprint(3, "a"),
        "customers": TableFingerprint(2, "b"),
        "gone": TableFingerprint(1, "c"),
    }
    restored = {"orders": TableFingerprint(2, "a"), "customers": TableFingerprint(2, "x")}

    assert verification_problems(expected, restored) == [
        "orders: 2 rows restored, the source had 3",
        "customers: checksum x... differs from the source's b...",
        "gone: not restored",
    ]
