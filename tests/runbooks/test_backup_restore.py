"""The backup restore drill against a real PostgreSQL (pg_dump / pg_restore) and S3 on a moto server.

moto stands in for S3 because it is the only AWS stand-in allowed here. Velero runs no server in this
environment, so the Velero phase handling is tested through the drill's ``Velero`` seam with a recorded
sequence of phases; the real velero.io/v1 objects are exercised by the e2e test on the local clusters.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from drill_helpers import PREFIX, VERIFY_TABLES, hours_ago, make_plan, now_utc, scratch_databases

from devenv.services import PostgreSQL
from rollout_policies.plan.model import Plan
from runbooks.backup import (
    MANIFEST_NAME,
    BackupObject,
    TableFingerprint,
    latest_backup,
    make_backup,
    read_manifest,
)
from runbooks.backup_restore import (
    RestoreDrill,
    RestoreTarget,
    VeleroBackup,
    VeleroBounds,
    restore_finished,
    verification_problems,
)
from runbooks.report import StepStatus, Verdict

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
def backup(app_db: str, s3: Any, bucket: str) -> Callable[..., BackupObject]:
    """Back the application database up to S3 as if ``age_hours`` ago; returns the backup made."""

    def take(*, age_hours: float) -> BackupObject:
        return make_backup(
            dsn=app_db, s3=s3, bucket=bucket, prefix=PREFIX, tables=VERIFY_TABLES, now=hours_ago(age_hours)
        )

    return take


@pytest.fixture
def drill(plan: Plan, s3: Any, postgres: PostgreSQL, bucket: str) -> Callable[..., RestoreDrill]:
    """The restore drill on moto's S3 and the scratch PostgreSQL; keyword arguments (``plan``,
    ``velero``, ``after_restore``...) override the drill's fields."""

    def make(velero: Any = None, plan: Plan = plan, **kwargs: Any) -> RestoreDrill:
        return RestoreDrill(
            plan=plan,
            target=RestoreTarget(bucket=bucket, prefix=PREFIX, restore_dsn=postgres.dsn),
            s3=s3,
            velero=velero,
            velero_bounds=VeleroBounds(attempts=5, interval=0.01, deadline=5),
            **kwargs,
        )

    return make


def test_a_backup_uploads_the_dump_and_a_manifest_of_the_verified_tables(
    backup: Callable[..., BackupObject],
    s3: Any,
) -> None:
    made = backup(age_hours=0.1)

    manifest = read_manifest(s3, made)
    assert manifest["tables"]["orders"]["rows"] == 1500
    assert manifest["tables"]["public.customers"]["rows"] == 200
    assert len(manifest["dump_sha256"]) == 64
    assert made.manifest_key.endswith(MANIFEST_NAME)


def test_the_newest_backup_is_found_by_its_time_and_a_dump_without_manifest_is_ignored(
    backup: Callable[..., BackupObject],
    s3: Any,
    bucket: str,
) -> None:
    backup(age_hours=3)
    newest = backup(age_hours=2)
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/29991231T000000Z/app.dump", Body=b"half-uploaded")

    assert latest_backup(s3, bucket, PREFIX) == newest


def test_the_drill_restores_verifies_measures_and_drops_the_scratch_database(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
    postgres: PostgreSQL,
) -> None:
    backup(age_hours=0.25)

    report = drill().run(execute=True)

    assert report.verdict is Verdict.PASSED, report.to_markdown()
    assert report.step("verify-tables").status is StepStatus.PASSED
    assert report.step("drop-scratch-database").status is StepStatus.PASSED
    assert report.objective("RTO (restore time)").met is True
    rpo = report.objective("RPO (backup age)").measured_seconds
    assert rpo is not None and 0.25 * 3600 <= rpo < 0.3 * 3600
    assert scratch_databases(postgres) == []


def test_without_a_cluster_the_velero_steps_are_skipped_not_passed(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=0.1)

    report = drill(velero=None).run(execute=True)

    assert report.step("find-latest-velero-backup").status is StepStatus.SKIPPED
    assert report.step("velero-restore").status is StepStatus.SKIPPED
    assert "skipped" in report.to_markdown()


def test_a_backup_older_than_the_rpo_fails_the_drill(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=3)

    report = drill().run(execute=True)

    assert report.verdict is Verdict.FAILED
    assert report.objective("RPO (backup age)").met is False
    assert report.exit_code == 1
    assert "**MISSED**" in report.to_markdown()


def test_restored_data_that_does_not_verify_fails_the_drill_and_still_drops_the_scratch_database(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
    postgres: PostgreSQL,
) -> None:
    backup(age_hours=0.1)

    def corrupt(scratch_dsn: str) -> None:  # a restore that silently lost a change
        with psycopg.connect(scratch_dsn) as conn:
            conn.execute("UPDATE orders SET total = total + 1 WHERE id = 42")

    report = drill(after_restore=corrupt).run(execute=True)

    assert report.verdict is Verdict.FAILED
    verify = report.step("verify-tables")
    assert verify.status is StepStatus.FAILED
    assert "orders: checksum" in verify.detail
    assert report.step("drop-scratch-database").status is StepStatus.PASSED
    assert scratch_databases(postgres) == []


def test_a_dump_that_does_not_match_its_manifest_fails_before_restoring(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
    s3: Any,
    bucket: str,
) -> None:
    made = backup(age_hours=0.1)
    manifest = read_manifest(s3, made)
    s3.put_object(
        Bucket=bucket, Key=made.manifest_key, Body=json.dumps({**manifest, "dump_sha256": "0" * 64}).encode()
    )

    report = drill().run(execute=True)

    assert report.step("download-dump").status is StepStatus.FAILED
    assert [s.name for s in report.steps] == [
        "find-latest-dump",
        "find-latest-velero-backup",
        "download-dump",
    ]


def test_a_missing_backup_fails_the_drill(
    drill: Callable[..., RestoreDrill],
) -> None:
    report = drill().run(execute=True)

    assert report.step("find-latest-dump").status is StepStatus.FAILED
    assert report.objective("RPO (backup age)").measured_seconds is None
    assert report.verdict is Verdict.FAILED


def test_a_dry_run_restores_nothing(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
    postgres: PostgreSQL,
) -> None:
    backup(age_hours=0.1)

    report = drill().run(execute=False)

    assert report.verdict is Verdict.DRY_RUN
    assert report.step("restore-dump").status is StepStatus.PLANNED
    assert scratch_databases(postgres) == []


def test_a_velero_restore_that_completes_passes(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=0.1)
    velero = RecordedVelero(["", "New", "InProgress", "Completed"])

    report = drill(velero=velero).run(execute=True)

    assert report.step("velero-restore").status is StepStatus.PASSED
    assert velero.restores[0][:2] == ("daily-20261125", "markethub")
    assert velero.restores[0][2].startswith("drill-restore-")
    assert velero.deleted == [velero.restores[0][2]]
    assert report.verdict is Verdict.PASSED


def test_a_velero_restore_phase_containing_failed_fails_the_drill(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=0.1)

    report = drill(velero=RecordedVelero(["InProgress", "PartiallyFailed"])).run(execute=True)

    assert report.step("velero-restore").status is StepStatus.FAILED
    assert "PartiallyFailed" in report.step("velero-restore").detail
    assert report.verdict is Verdict.FAILED


def test_a_velero_restore_with_no_final_phase_is_inconclusive(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=0.1)

    report = drill(velero=RecordedVelero([""])).run(execute=True)

    assert report.step("velero-restore").status is StepStatus.INCONCLUSIVE
    assert report.verdict is Verdict.INCONCLUSIVE
    assert report.exit_code == 3


def test_a_failed_newest_velero_backup_fails_the_drill(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=0.1)
    velero = RecordedVelero(["Completed"], backup=VeleroBackup("daily", "Failed", now_utc(), ()))

    report = drill(plan=make_plan(), velero=velero).run(execute=True)

    assert report.step("find-latest-velero-backup").status is StepStatus.FAILED
    assert velero.restores == []


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
        "orders: 2 rows, the manifest says 3",
        "customers: checksum x... differs from the manifest's b...",
        "gone: not restored",
    ]


def test_the_rto_objective_is_missed_when_the_restore_takes_longer(
    backup: Callable[..., BackupObject],
    drill: Callable[..., RestoreDrill],
) -> None:
    backup(age_hours=0.1)
    ticks = iter(range(0, 10_000, 400))  # an injected clock where every reading is 400s later

    report = drill(plan=make_plan(rto="5m"), monotonic=lambda: float(next(ticks))).run(execute=True)

    assert report.objective("RTO (restore time)").met is False
    assert report.verdict is Verdict.FAILED
    assert timedelta(seconds=report.objective("RTO (restore time)").measured_seconds or 0) > timedelta(
        minutes=5
    )
