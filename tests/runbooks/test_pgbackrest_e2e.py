"""Database backups and the point-in-time restore drill, run as the Pulumi program declares them.

Real: PostgreSQL 15 (Debian) archiving WAL with pgBackRest 2.45 (Debian), pgBackRest's full and
incremental backups, ``pgbackrest restore --type=time`` into a fresh PostgreSQL, all on 127.0.0.1.
Stand-in: S3 is the moto server, behind the rig's TLS front (``devenv.tls_front``) because pgBackRest
speaks S3 over HTTPS only.

The commands and variables come from the rendered CronJobs (``pulumi_render.deploy`` of the program
for a stack whose ``backup`` points at this rig); nothing is retyped. What the test adds, because a
kubelet would: the Secrets' values (``secretKeyRef``), and for the backup jobs the rig's Unix socket
and lock folder (production uses pgBackRest's defaults on the database host). The drill's
``--report-dir`` is sent to the test's folder by one more flag at the end (the pod writes /tmp/drills).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from drill_helpers import aws
from pulumi_render import deploy

from devenv.services import ArchivingPostgreSQL, MotoServer
from devenv.tls_front import TlsFront
from infra.settings import settings_from_stack_file
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan

pytestmark = pytest.mark.e2e

SERVICE = "markethub-mobile"
S3_SECRET = "pgbackrest-s3"
STACK_FILE = Path(__file__).parents[2] / "Pulumi.local-us-east-1.yaml"
SECRETS = {
    (S3_SECRET, "key"): "testing",
    (S3_SECRET, "secret"): "testing",
    ("markethub-rollout-git", "token"): "unused for a file:// remote",
}


def container_env(entries: list[dict[str, Any]], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """A container's ``env`` as the kubelet resolves it (values, and Secret references)."""
    env = {}
    for entry in entries:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"])
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            env[entry["name"]] = secrets[(ref["name"], ref["key"])]
    return env


def pod_spec(cronjob: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


class Rig:
    def __init__(self, tmp: Path, moto: MotoServer) -> None:
        self.tmp = tmp
        self.plan: Plan = load_plan(DEFAULT_PLAN)
        self.front = TlsFront(tmp / "tls", moto.port).start()
        self.bucket = f"pgbr-{os.getpid()}"
        aws("s3", moto).create_bucket(Bucket=self.bucket)
        self.s3 = aws("s3", moto)
        self.db: ArchivingPostgreSQL | None = None
        # The rollout repository the drill CronJob pushes its reports to (drills.reportsRepository).
        self.reports_remote = tmp / "rollout.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.reports_remote)], check=True)
        seed = tmp / "seed"
        subprocess.run(
            ["git", "clone", "-q", str(self.reports_remote), str(seed)], check=True, capture_output=True
        )
        for args in (["commit", "-q", "--allow-empty", "-m", "start"], ["push", "-q", "origin", "HEAD:main"]):
            subprocess.run(
                ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=seed, check=True
            )

    def render(self, **backup: Any) -> Any:
        """The program for the shipped local stack, its ``backup`` pointed at this rig."""
        stack = settings_from_stack_file(STACK_FILE)
        values = {
            "bucket": self.bucket,
            "s3_endpoint": f"https://{self.front.endpoint}",
            "s3_credentials_secret": S3_SECRET,
            **backup,
        }
        drills = stack.drills.model_copy(update={"reports_repository": self.reports_remote.as_uri()})
        return deploy(
            stack.model_copy(update={"backup": stack.backup.model_copy(update=values), "drills": drills}),
            self.plan,
        )

    def cronjob(self, deployed: Any, name: str) -> dict[str, Any]:
        found: dict[str, Any] = deployed.one("CronJob", name)
        return found


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("pgbackrest"), moto_server)
    # The server archives with the repository settings the backup CronJob carries.
    first = rig.render()
    job = pod_spec(rig.cronjob(first, f"{SERVICE}-pgbackrest-full-1d"))["containers"][0]
    repository = {
        k: v for k, v in container_env(job["env"], SECRETS).items() if not k.startswith("PGBACKREST_PG1_")
    }
    rig.db = ArchivingPostgreSQL(rig.tmp / "pg", repository).start()
    try:
        yield rig
    finally:
        rig.db.stop()
        rig.db.remove_run_dir()
        rig.front.stop()


@pytest.fixture(scope="module")
def app_dsn(rig: Rig) -> str:
    assert rig.db is not None
    with psycopg.connect(rig.db.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE markethub")
    dsn = rig.db.dsn_for("markethub")
    with psycopg.connect(dsn) as conn:
        for table in rig.plan.objectives.disaster_recovery.verify_tables:
            conn.execute(f'CREATE TABLE "{table}" (id bigserial PRIMARY KEY, payload text, n int DEFAULT 0)')
            conn.execute(
                f'INSERT INTO "{table}" (payload) SELECT md5(g::text) FROM generate_series(1, 2000) g'
            )
    return dsn


class Writer(threading.Thread):
    """Writes continue through backups and the drill: inserts and updates in every verified table."""

    def __init__(self, dsn: str, tables: tuple[str, ...]) -> None:
        super().__init__(daemon=True)
        self.dsn, self.tables = dsn, tables
        self.stop_event = threading.Event()
        self.commits = 0

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop_event.is_set():
                for table in self.tables:
                    conn.execute(f'INSERT INTO "{table}" (payload) VALUES (md5(random()::text))')
                    conn.execute(f'UPDATE "{table}" SET n = n + 1 WHERE id = 1 + (random() * 1000)::int')
                    self.commits += 2
                self.stop_event.wait(0.02)


def rollout_argv(command: list[str]) -> list[str]:
    """The container's command; ``rollout`` is this virtualenv's (the image's is on its PATH)."""
    assert command[0] == "rollout"
    return [str(Path(sys.executable).with_name("rollout")), *command[1:]]


def run_job(cronjob: dict[str, Any], extra_env: dict[str, str]) -> str:
    """The Job's container: its command with its resolved env; returns its output."""
    container = pod_spec(cronjob)["containers"][0]
    env = {**os.environ, **container_env(container["env"], SECRETS), **extra_env}
    result = subprocess.run(
        rollout_argv(container["command"]), env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{container['name']}: {result.stdout[-1000:]} {result.stderr[-2000:]}"
    return result.stdout


def run_drill(cronjob: dict[str, Any], secrets: dict[tuple[str, str], str], reports: Path) -> tuple[int, str]:
    container = pod_spec(cronjob)["containers"][0]
    argv = [*rollout_argv(container["command"]), "--report-dir", str(reports)]
    env = {**os.environ, **container_env(container["env"], secrets)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    return result.returncode, result.stdout + result.stderr


def latest_report(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(sorted(folder.glob("*.json"))[-1].read_text())
    return data


def test_full_and_incremental_backups_then_a_verified_point_in_time_restore_and_a_broken_chain(
    rig: Rig, app_dsn: str, tmp_path: Path
) -> None:
    assert rig.db is not None
    deployed = rig.render(database_path=str(rig.db.data_dir), database_port=rig.db.port)
    full = rig.cronjob(deployed, f"{SERVICE}-pgbackrest-full-1d")
    incremental = rig.cronjob(deployed, f"{SERVICE}-pgbackrest-incremental-1h")
    drill = rig.cronjob(deployed, f"{SERVICE}-drill-backup-restore")
    # What production leaves to pgBackRest's defaults on the database host: the rig's socket and locks.
    here = {
        "PGBACKREST_PG1_SOCKET_PATH": str(rig.db.socket_dir),
        "PGBACKREST_LOCK_PATH": str(rig.db.socket_dir),
        "PGBACKREST_PG1_USER": rig.db.superuser,
    }
    tables = rig.plan.objectives.disaster_recovery.verify_tables
    writer = Writer(app_dsn, tables)
    writer.start()
    try:
        assert "F in s3://" in run_job(full, here)
        assert "I in s3://" in run_job(incremental, here)
        run_job(incremental, here)
        commits_before_drill = writer.commits

        reports = tmp_path / "drills"
        code, output = run_drill(drill, {**SECRETS, ("markethub-db", "url"): app_dsn}, reports)
        assert code == 0, output
        assert writer.commits > commits_before_drill  # writes went on while the drill ran
    finally:
        writer.stop_event.set()
        writer.join(timeout=10)

    report = latest_report(reports / "backup-restore")
    assert report["verdict"] == "passed", json.dumps(report, indent=2)
    steps = {step["name"]: step for step in report["steps"]}
    assert "needs 3 set(s)" in steps["check-backup-chain"]["detail"]
    assert steps["verify-tables"]["status"] == "passed"
    assert steps["verify-tables"]["detail"].endswith("checksums match")
    assert steps["remove-restored-database"]["status"] == "passed"
    objectives = {o["name"]: o for o in report["objectives"]}
    rpo = objectives["RPO (source's newest commit - newest restored)"]
    rto = objectives["RTO (restore to verified)"]
    assert rpo["met"] is True and rpo["limit_seconds"] == 3600 and rpo["measured_seconds"] < 5
    assert rto["met"] is True and rto["limit_seconds"] == 1800 and rto["measured_seconds"] > 0
    markdown = sorted((reports / "backup-restore").glob("*.md"))[-1].read_text()
    assert "| RPO (source's newest commit - newest restored) | 1.00 h |" in markdown
    # The report is committed under reports/drills/ of the rollout repository, as the CronJob declares.
    pushed = subprocess.run(
        ["git", "-C", str(rig.reports_remote), "show", "--name-only", "--format=%s", "main"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    json_name = sorted((reports / "backup-restore").glob("*.json"))[-1].name
    assert f"reports/drills/backup-restore/{json_name}" in pushed
    assert f"reports/drills/backup-restore/{json_name[:-5]}.md" in pushed

    # Break the chain: the first incremental's files are deleted from the repository.
    info = json.loads(
        subprocess.run(
            ["pgbackrest", "info", "--output=json"],
            env={**os.environ, **container_env(pod_spec(full)["containers"][0]["env"], SECRETS), **here},
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    labels = [backup["label"] for backup in info[0]["backup"]]
    assert [label[-1] for label in labels] == ["F", "I", "I"]
    prefix = f"pgbackrest/{SERVICE}/backup/{SERVICE}/{labels[1]}/"
    pages = rig.s3.get_paginator("list_objects_v2").paginate(Bucket=rig.bucket, Prefix=prefix)
    for page in pages:
        for item in page.get("Contents", []):
            rig.s3.delete_object(Bucket=rig.bucket, Key=item["Key"])

    broken = tmp_path / "broken"
    code, output = run_drill(drill, {**SECRETS, ("markethub-db", "url"): app_dsn}, broken)
    assert code == 1, output
    report = latest_report(broken / "backup-restore")
    chain = next(step for step in report["steps"] if step["name"] == "check-backup-chain")
    assert chain["status"] == "failed"
    assert chain["detail"] == (
        f"backup chain broken: incremental backup {labels[1]} is gone from the repository "
        f"(no {labels[1]}/backup.manifest), and the newest backup {labels[2]} needs it"
    )
    assert report["verdict"] == "failed"
