"""The backup restore drill: restore the newest dump into a scratch database, verify it, time it.

It finds the newest pg_dump in S3 (with its manifest) and the newest Velero Backup on the cluster,
restores the dump into a scratch database on a real PostgreSQL with pg_restore, compares row counts
and checksums of the plan's ``verify_tables`` with the manifest, measures restore time (RTO) and
backup age (RPO) against the plan, drops the scratch database, and restores the Velero Backup into a
scratch namespace, checking the Restore's phase.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tenacity import RetryError, Retrying, retry_if_result, stop_after_attempt, stop_after_delay, wait_fixed

from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan
from runbooks.backup import (
    TableFingerprint,
    download,
    latest_backup,
    postgres_tool,
    read_manifest,
    run_tool,
    table_fingerprints,
)
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
    Step("find-latest-dump", "the newest pg_dump in S3 that has a manifest; its age is the RPO"),
    Step("find-latest-velero-backup", "the newest velero.io/v1 Backup on the cluster"),
    Step("download-dump", "download the dump and check its SHA-256 against the manifest"),
    Step(
        "create-scratch-database", "create an empty scratch database", "PostgreSQL: CREATE DATABASE drill_*"
    ),
    Step("restore-dump", "pg_restore the dump into the scratch database", "PostgreSQL: the scratch database"),
    Step("verify-tables", "row counts and checksums of the plan's verify_tables match the manifest"),
    Step(
        "drop-scratch-database",
        "drop the scratch database (always, once created)",
        "PostgreSQL: DROP DATABASE",
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
    bucket: str = "markethub-backups"
    prefix: str = "postgres"
    restore_dsn: str = ""  # the PostgreSQL server (and a database to connect to) for the scratch database
    namespace: str = "markethub"  # the workload namespace restored from the Velero Backup


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
    # Called with the scratch database's DSN after pg_restore, before verification (fault injection).
    after_restore: Callable[[str], None] | None = None

    def run(self, *, execute: bool) -> DrillReport:
        dr = self.plan.objectives.disaster_recovery
        if execute and not self.target.restore_dsn:
            raise UserError(
                "--restore-dsn: needed with --execute (the PostgreSQL server for the scratch database)"
            )
        rec = DrillRecorder(DRILL, execute, self.now, self.monotonic, known_steps=STEP_NAMES)
        rpo: float | None = None
        rto: float | None = None
        velero_backup: VeleroBackup | None = None
        try:
            with rec.step("find-latest-dump") as step:
                backup = latest_backup(self.s3, self.target.bucket, self.target.prefix)
                if backup is None:
                    raise StepFailed(
                        f"no dump with a manifest in s3://{self.target.bucket}/{self.target.prefix}"
                    )
                rpo = (self.now() - backup.taken_at).total_seconds()
                manifest = read_manifest(self.s3, backup)
                step.detail = f"s3://{backup.bucket}/{backup.key}, taken {backup.taken_at.isoformat()}"
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
                for s in STEPS[2:]:
                    rec.planned(s.name, s.changes or "none (read-only)")
                rec.notes.append("dry run: pass --execute to restore")
            else:
                rto = self._restore_and_verify(rec, backup, manifest, dr.verify_tables)
                self._velero_restore(rec, velero_backup)
        except StepFailed:
            rec.notes.append("the drill stopped at the failed step")
        rec.objective("RPO (backup age)", dr.rpo.total_seconds(), rpo)
        if execute:
            rec.objective("RTO (restore time)", dr.rto.total_seconds(), rto)
        return rec.finish()

    def _restore_and_verify(
        self, rec: DrillRecorder, backup: Any, manifest: Mapping[str, Any], tables: tuple[str, ...]
    ) -> float:
        changes = {s.name: s.changes for s in STEPS}
        scratch = f"drill_restore_{self.now().strftime('%Y%m%d%H%M%S')}_{secrets.token_hex(3)}"
        scratch_dsn = make_conninfo(self.target.restore_dsn, dbname=scratch)
        created = False
        started = self.monotonic()
        with tempfile.TemporaryDirectory(prefix="markethub-restore-") as tmp:
            try:
                with rec.step("download-dump") as step:
                    path = Path(tmp) / "restore.dump"
                    digest = download(self.s3, backup, path)
                    if digest != manifest.get("dump_sha256"):
                        raise StepFailed(f"dump SHA-256 {digest[:12]}... does not match the manifest")
                    step.detail = f"{path.stat().st_size} bytes, SHA-256 matches the manifest"
                with rec.step("create-scratch-database", changes["create-scratch-database"]) as step:
                    with psycopg.connect(
                        self.target.restore_dsn, autocommit=True, connect_timeout=10
                    ) as conn:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
                    created = True
                    step.detail = f"database {scratch} on {_server(self.target.restore_dsn)}"
                with rec.step("restore-dump", changes["restore-dump"]) as step:
                    run_tool(
                        [
                            postgres_tool("pg_restore"),
                            "--no-owner",
                            "--no-privileges",
                            "--exit-on-error",
                            f"--dbname={scratch_dsn}",
                            str(path),
                        ],
                        "pg_restore",
                    )
                    if self.after_restore is not None:
                        self.after_restore(scratch_dsn)
                    step.detail = f"pg_restore into {scratch}"
                with rec.step("verify-tables") as step:
                    expected = manifest.get("tables") or {}
                    missing = [t for t in tables if t not in expected]
                    if missing:
                        raise StepFailed(f"the manifest has no figures for {', '.join(missing)}")
                    if not tables:
                        raise StepFailed(
                            "objectives.disaster_recovery.verify_tables is empty: nothing to verify"
                        )
                    with psycopg.connect(scratch_dsn, connect_timeout=10) as conn:
                        restored = table_fingerprints(conn, tables)
                    problems = verification_problems(
                        {t: TableFingerprint(**expected[t]) for t in tables}, restored
                    )
                    if problems:
                        raise StepFailed("restored data does not verify: " + "; ".join(problems))
                    step.detail = (
                        ", ".join(f"{t}: {restored[t].rows} rows" for t in tables) + ", checksums match"
                    )
                return self.monotonic() - started
            finally:
                if created:
                    self._drop(rec, scratch)

    def _drop(self, rec: DrillRecorder, scratch: str) -> None:
        try:
            with rec.step("drop-scratch-database", "PostgreSQL: DROP DATABASE") as step:
                with psycopg.connect(self.target.restore_dsn, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch))
                    )
                step.detail = f"dropped {scratch}"
        except StepFailed:
            rec.notes.append(f"drop the scratch database {scratch} by hand")

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
    """Tables whose restored row count or checksum differs from the manifest. Pure."""
    problems = []
    for table, want in expected.items():
        got = restored.get(table)
        if got is None:
            problems.append(f"{table}: not restored")
        elif got.rows != want.rows:
            problems.append(f"{table}: {got.rows} rows, the manifest says {want.rows}")
        elif got.checksum != want.checksum:
            problems.append(
                f"{table}: checksum {got.checksum[:12]}... differs from the manifest's "
                f"{want.checksum[:12]}..."
            )
    return problems


def _server(dsn: str) -> str:
    parts = conninfo_to_dict(dsn)
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}"
