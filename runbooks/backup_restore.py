"""The backup restore drill: a point-in-time restore from pgBackRest's chain, verified, timed.

It reads the repository's backup chain from S3 (``backup.info`` and each set's manifest) and fails
with a finding when a set the newest backup needs is gone or a backup is older than the plan allows.
With ``--execute`` it marks a recovery target at the source (the moment, the newest commit, row counts
and checksums of the plan's ``verify_tables``), restores the full + incrementals + WAL to that moment
into a fresh PostgreSQL (``pgbackrest restore --type=time``), compares the tables, measures RTO
(restore to verified) and RPO (the source's newest commit at the target against the newest commit
restored), and removes the restored database. Then it restores the newest Velero Backup into a
scratch namespace and checks the Restore's phase.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from psycopg.conninfo import conninfo_to_dict
from tenacity import RetryError, Retrying, retry_if_result, stop_after_attempt, stop_after_delay, wait_fixed

from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan
from runbooks.backup import TableFingerprint, backup_sets, present_sets
from runbooks.pgbackrest import Repository, age_findings, chain_findings, newest
from runbooks.pitr import RecoveryTarget, RestoredDatabase, mark_recovery_target
from runbooks.report import (
    DrillRecorder,
    DrillReport,
    Step,
    StepFailed,
    StepInconclusive,
    StepSkipped,
    utc_now,
)

DRILL = "backup-restore"

STEPS: tuple[Step, ...] = (
    Step(
        "check-backup-chain",
        "every set the newest backup needs is in the repository (backup.info, manifests)",
    ),
    Step("check-backup-age", "the newest full and the newest backup are as fresh as the plan's objectives"),
    Step("find-latest-velero-backup", "the newest velero.io/v1 Backup on the cluster"),
    Step(
        "mark-recovery-target",
        "at the source: lock verify_tables for a snapshot (milliseconds), note the moment and the "
        "newest commit, read their figures; switch WAL and wait until it is archived",
        "the source database: a brief SHARE lock, one empty transaction, a WAL switch",
    ),
    Step(
        "restore-to-time",
        "pgbackrest restore --type=time to the moment: full + incrementals + WAL into a fresh folder",
        "a temporary folder on the drill's host",
    ),
    Step(
        "start-restored-database",
        "a fresh PostgreSQL on the restored folder (Unix socket only), replaying to the moment and pausing",
        "a PostgreSQL process on the drill's host",
    ),
    Step("verify-tables", "row counts and checksums of verify_tables match the source at the moment"),
    Step(
        "remove-restored-database",
        "stop the restored PostgreSQL and delete its folder (always, once restored)",
        "the temporary folder and process",
    ),
    Step(
        "velero-restore",
        "restore the Velero Backup into a scratch namespace and wait for its phase",
        "Kubernetes: a velero.io/v1 Restore and a drill-restore-* namespace",
    ),
)
STEP_NAMES = frozenset(step.name for step in STEPS)


@dataclass(frozen=True)
class VeleroBackup:
    name: str
    phase: str
    completed_at: datetime | None
    namespaces: tuple[str, ...]


class Velero(Protocol):
    """Velero objects on one cluster."""

    def latest_backup(self) -> VeleroBackup | None: ...

    def create_restore(self, backup: str, namespace: str, scratch_namespace: str) -> str: ...

    def restore_phase(self, name: str) -> str: ...

    def delete_namespace(self, name: str) -> None: ...


class KubernetesVelero:
    """velero.io/v1 Backup and Restore objects through the kubernetes client."""

    GROUP, VERSION = "velero.io", "v1"

    def __init__(
        self, kubeconfig: Path | None, velero_namespace: str = "velero", context: str | None = None
    ) -> None:
        from kubernetes import client, config  # imported on use: slow to import

        self._api = client.CustomObjectsApi(
            config.new_client_from_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context
            )
        )
        self._namespace = velero_namespace

    def latest_backup(self) -> VeleroBackup | None:
        items = self._api.list_namespaced_custom_object(
            self.GROUP, self.VERSION, self._namespace, "backups", _request_timeout=10
        )["items"]
        backups = []
        for item in items:
            status = item.get("status") or {}
            stamp = status.get("completionTimestamp") or item["metadata"].get("creationTimestamp")
            backups.append(
                VeleroBackup(
                    name=item["metadata"]["name"],
                    phase=status.get("phase", ""),
                    completed_at=datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None,
                    namespaces=tuple((item.get("spec") or {}).get("includedNamespaces") or ()),
                )
            )
        return max(backups, key=lambda b: (b.completed_at is not None, b.completed_at, b.name), default=None)

    def create_restore(self, backup: str, namespace: str, scratch_namespace: str) -> str:
        name = f"{scratch_namespace}"
        body = {
            "apiVersion": f"{self.GROUP}/{self.VERSION}",
            "kind": "Restore",
            "metadata": {"name": name, "namespace": self._namespace, "labels": {"markethub.io/drill": DRILL}},
            "spec": {
                "backupName": backup,
                "includedNamespaces": [namespace],
                "namespaceMapping": {namespace: scratch_namespace},
                "restorePVs": True,
            },
        }
        self._api.create_namespaced_custom_object(
            self.GROUP, self.VERSION, self._namespace, "restores", body, _request_timeout=10
        )
        return name

    def restore_phase(self, name: str) -> str:
        item = self._api.get_namespaced_custom_object(
            self.GROUP, self.VERSION, self._namespace, "restores", name, _request_timeout=10
        )
        return str((item.get("status") or {}).get("phase", ""))

    def delete_namespace(self, name: str) -> None:
        """Delete the drill's scratch namespace (absent is fine: a failed Restore may not create it)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        try:
            client.CoreV1Api(self._api.api_client).delete_namespace(name, _request_timeout=10)
        except ApiException as err:
            if err.status != 404:
                raise


@dataclass(frozen=True)
class RestoreTarget:
    repository: Repository
    source_dsn: str = ""  # the database backed up: the recovery target is marked there
    namespace: str = "markethub"  # the workload namespace restored from the Velero Backup
    env: Mapping[str, str] = field(default_factory=dict)  # PGBACKREST_* for pgbackrest restore
    archive_wait: float = 120.0  # seconds for the WAL past the target to reach the archive
    replay_wait: float = 600.0  # seconds for the restored PostgreSQL to replay to the target


@dataclass(frozen=True)
class VeleroBounds:
    attempts: int = 60
    interval: float = 1.0
    deadline: float = 120.0


@dataclass
class RestoreDrill:
    plan: Plan
    target: RestoreTarget
    s3: Any
    velero: Velero | None  # None: no cluster configured; the Velero steps are reported as skipped
    now: Callable[[], datetime] = utc_now
    monotonic: Callable[[], float] = time.monotonic
    velero_bounds: VeleroBounds = field(default_factory=VeleroBounds)
    # Called with the restored database after replay, before verification (fault injection).
    after_restore: Callable[[RestoredDatabase], None] | None = None

    def run(self, *, execute: bool) -> DrillReport:
        dr = self.plan.objectives.disaster_recovery
        if execute and not self.target.source_dsn:
            raise UserError("--source-dsn: needed with --execute (the database whose backups are drilled)")
        rec = DrillRecorder(DRILL, execute, self.now, self.monotonic, known_steps=STEP_NAMES)
        rpo: float | None = None
        rto: float | None = None
        velero_backup: VeleroBackup | None = None
        repo = self.target.repository
        try:
            with rec.step("check-backup-chain") as step:
                sets = backup_sets(self.s3, repo)
                problems = chain_findings(sets, present_sets(self.s3, repo))
                if problems:
                    raise StepFailed("; ".join(problems))
                latest = newest(sets)
                assert latest is not None
                chain = [*latest.references, latest.label]
                step.detail = (
                    f"s3://{repo.bucket}/{repo.backup_prefix}: {latest.label} needs {len(chain)} set(s) "
                    f"({', '.join(chain)}), all present"
                )
            with rec.step("check-backup-age") as step:
                stale = age_findings(sets, self.plan.objectives, self.now())
                if stale:
                    raise StepFailed("; ".join(stale))
                step.detail = f"newest backup finished {latest.stopped_at.isoformat()}"
            with rec.step("find-latest-velero-backup") as step:
                if self.velero is None:
                    raise StepSkipped("no cluster configured (--kubeconfig): Velero not checked")
                velero_backup = self.velero.latest_backup()
                if velero_backup is None:
                    raise StepFailed("no velero.io/v1 Backup on the cluster")
                if velero_backup.phase != "Completed":
                    phase = velero_backup.phase or "not finished"
                    raise StepFailed(f"newest Velero Backup {velero_backup.name} is {phase}, not Completed")
                step.detail = f"{velero_backup.name} ({velero_backup.phase or 'no phase'})"
            if not execute:
                for s in STEPS[3:]:
                    rec.planned(s.name, s.changes or "none (read-only)")
                rec.notes.append("dry run: pass --execute to restore")
            else:
                rto, rpo = self._restore_and_verify(rec, dr.verify_tables, latest.stopped_at)
                self._velero_restore(rec, velero_backup)
        except StepFailed:
            rec.notes.append("the drill stopped at the failed step")
        if execute:
            rec.objective("RPO (source's newest commit - newest restored)", dr.rpo.total_seconds(), rpo)
            rec.objective("RTO (restore to verified)", dr.rto.total_seconds(), rto)
        return rec.finish()

    def _restore_and_verify(
        self, rec: DrillRecorder, tables: tuple[str, ...], backup_stopped: datetime
    ) -> tuple[float | None, float | None]:
        changes = {s.name: s.changes for s in STEPS}
        if not tables:
            with rec.step("mark-recovery-target"):
                raise StepFailed("objectives.disaster_recovery.verify_tables is empty: nothing to verify")
        with rec.step("mark-recovery-target", changes["mark-recovery-target"]) as step:
            target: RecoveryTarget = mark_recovery_target(
                self.target.source_dsn, tables, self.target.archive_wait
            )
            step.detail = (
                f"{target.at.isoformat()} (newest commit {target.newest_commit.isoformat()}"
                f"{'' if target.commit_timestamps else ', track_commit_timestamp off: the moment itself'}); "
                f"WAL {target.wal_segment} archived"
            )
        dbname = str(conninfo_to_dict(self.target.source_dsn).get("dbname") or "postgres")
        restored = RestoredDatabase(dict(self.target.env), dbname)
        started = self.monotonic()
        rpo: float | None = None
        try:
            with rec.step("restore-to-time", changes["restore-to-time"]) as step:
                restored.restore(target.at)
                step.detail = f"pgbackrest restore --type=time --target={target.at.isoformat()}"
            with rec.step("start-restored-database", changes["start-restored-database"]) as step:
                restored.start(self.target.replay_wait)
                newest_restored = restored.newest_commit()
                if newest_restored is not None:
                    rpo = max(0.0, (target.newest_commit - newest_restored).total_seconds())
                    step.detail = (
                        f"replay paused at the target; newest restored commit {newest_restored.isoformat()}"
                    )
                elif target.newest_commit <= backup_stopped:
                    # Nothing to replay: the source's newest commit was already in the base backup.
                    rpo = 0.0
                    step.detail = "replay paused at the target; no commit after the backup, all in its files"
                else:
                    step.detail = "replay paused at the target, but replayed no commit: RPO not measured"
            if self.after_restore is not None:
                self.after_restore(restored)
            with rec.step("verify-tables") as step:
                got = restored.fingerprints(tables)
                problems = verification_problems(target.tables, got)
                if problems:
                    raise StepFailed("restored data does not verify: " + "; ".join(problems))
                step.detail = ", ".join(f"{t}: {got[t].rows} rows" for t in tables) + ", checksums match"
            return self.monotonic() - started, rpo
        finally:
            self._remove(rec, restored)

    def _remove(self, rec: DrillRecorder, restored: RestoredDatabase) -> None:
        folder = restored.workdir
        try:
            with rec.step("remove-restored-database", "the temporary folder and process") as step:
                restored.remove()
                step.detail = f"stopped, removed {folder}"
        except StepFailed:
            rec.notes.append(f"remove {folder} by hand")

    def _velero_restore(self, rec: DrillRecorder, backup: VeleroBackup | None) -> None:
        changes = next(s.changes for s in STEPS if s.name == "velero-restore")
        with rec.step("velero-restore", changes) as step:
            if self.velero is None or backup is None:
                raise StepSkipped("no cluster configured (--kubeconfig): Velero restore not run")
            scratch_ns = f"drill-restore-{self.now().strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
            namespace = backup.namespaces[0] if len(backup.namespaces) == 1 else self.target.namespace
            name = self.velero.create_restore(backup.name, namespace, scratch_ns)
            velero = self.velero
            seen: list[str] = []

            def phase() -> str:
                value = velero.restore_phase(name)
                seen[:] = [value]
                return value

            retrying = Retrying(
                stop=stop_after_attempt(self.velero_bounds.attempts)
                | stop_after_delay(self.velero_bounds.deadline),
                wait=wait_fixed(self.velero_bounds.interval),
                retry=retry_if_result(lambda p: not restore_finished(p)),
            )
            try:
                final = retrying(phase)
            except RetryError as err:
                # The Restore may still run: its namespace stays; the page says how to remove it.
                last = seen[0] if seen and seen[0] else "none"
                raise StepInconclusive(
                    f"Restore {name} into {scratch_ns}: no final phase after "
                    f"{self.velero_bounds.attempts} polls (last: {last}; is the Velero server running?)"
                ) from err
            velero.delete_namespace(scratch_ns)  # the Restore object stays, as the drill's record
            if "Failed" in final:
                raise StepFailed(f"Restore {name} into {scratch_ns} ended {final}")
            step.detail = f"Restore {name} of {backup.name} into {scratch_ns}: {final}; namespace deleted"


def restore_finished(phase: str) -> bool:
    """A Velero Restore phase the drill stops polling at: Completed, or anything containing Failed."""
    return phase == "Completed" or "Failed" in phase


def verification_problems(
    expected: Mapping[str, TableFingerprint], restored: Mapping[str, TableFingerprint]
) -> list[str]:
    """Tables whose restored row count or checksum differs from the source at the target. Pure."""
    problems = []
    for table, want in expected.items():
        got = restored.get(table)
        if got is None:
            problems.append(f"{table}: not restored")
        elif got.rows != want.rows:
            problems.append(f"{table}: {got.rows} rows restored, the source had {want.rows}")
        elif got.checksum != want.checksum:
            problems.append(
                f"{table}: checksum {got.checksum[:12]}... differs from the source's {want.checksum[:12]}..."
            )
    return problems
