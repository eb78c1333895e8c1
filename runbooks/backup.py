"""Database backups with pgBackRest in S3: take one, read the repository's backup chain, fingerprint tables.

pgBackRest takes the full and incremental backups and archives WAL continuously (``archive_command``),
into an S3 repository (``runbooks.pgbackrest`` has the settings). Its options come from the process
environment (``PGBACKREST_*``), exactly as the CronJobs set them. The drills read the chain from the
repository's ``backup.info`` through an S3 client, so a check of backup freshness needs no pgBackRest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from rollout_policies.errors import UserError
from runbooks.pgbackrest import BACKUP_TYPES, BackupSet, Repository, newest, parse_backup_info


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    checksum: str  # md5 of every row's text, in a stable order


def postgres_tool(name: str) -> str:
    """The path of a PostgreSQL program: on PATH, else Debian's PostgreSQL 15 folder.

    The link is resolved: the restore drill starts ``postgres`` as the ``postgres`` user when it runs
    as root, and a link in a folder only root can enter (``/root/.cache/.../tools/bin``, where the
    toolchain puts Debian's server programs on PATH) would be "permission denied" for that user."""
    found = shutil.which(name)
    if found:
        return os.path.realpath(found)
    debian = Path("/usr/lib/postgresql/15/bin") / name
    if debian.exists():
        return str(debian)
    raise UserError(f"{name} not found on PATH (install the PostgreSQL server and client tools)")


def pgbackrest_binary() -> str:
    found = shutil.which("pgbackrest")
    if not found:
        raise UserError("pgbackrest not found on PATH (Debian package pgbackrest)")
    return found


def _table_identifier(table: str) -> sql.Identifier:
    return sql.Identifier(*table.split(".", 1))


def table_fingerprints(conn: psycopg.Connection[Any], tables: Iterable[str]) -> dict[str, TableFingerprint]:
    """Row count and checksum of each table, read in the connection's current transaction."""
    result = {}
    for table in tables:
        query = sql.SQL(
            "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') FROM {} AS t"
        ).format(_table_identifier(table))
        try:
            row = conn.execute(query).fetchone()
        except psycopg.errors.UndefinedTable as err:
            raise UserError(f"verify_tables: table {table!r} does not exist in the database") from err
        assert row is not None
        result[table] = TableFingerprint(rows=int(row[0]), checksum=str(row[1]))
    return result


def backup_sets(s3: Any, repo: Repository) -> tuple[BackupSet, ...]:
    """The backups ``backup.info`` lists (its copy when the file itself is gone); none when neither is."""
    for key in (repo.backup_info_key, repo.backup_info_key + ".copy"):
        try:
            body = s3.get_object(Bucket=repo.bucket, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            continue
        return parse_backup_info(body.decode())
    return ()


def present_sets(s3: Any, repo: Repository) -> set[str]:
    """Labels of the backup sets whose ``backup.manifest`` is in the repository."""
    labels = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=repo.bucket, Prefix=repo.backup_prefix):
        for item in page.get("Contents", []):
            rest = item["Key"][len(repo.backup_prefix) :]
            label, _, name = rest.partition("/")
            if name == "backup.manifest":
                labels.add(label)
    return labels


def latest_backup(s3: Any, repo: Repository) -> BackupSet | None:
    """The newest backup (full or incremental) of the repository."""
    return newest(backup_sets(s3, repo))


def take_backup(kind: str, env: Mapping[str, str] | None = None) -> str:
    """``pgbackrest stanza-create`` (a no-op once made) and ``pgbackrest backup --type=...``, as the
    CronJobs run them; returns the new backup's label."""
    backup_type = BACKUP_TYPES.get(kind)
    if backup_type is None:
        raise UserError(f"--type: {kind!r} is not one of {', '.join(BACKUP_TYPES)}")
    binary = pgbackrest_binary()
    run_tool([binary, "stanza-create"], "pgbackrest stanza-create", env)
    run_tool([binary, "backup", f"--type={backup_type}"], "pgbackrest backup", env)
    info = json.loads(run_tool([binary, "info", "--output=json"], "pgbackrest info", env))
    backups = info[0].get("backup") or []
    if not backups:
        raise RuntimeError("pgbackrest info lists no backup after a successful backup")
    return str(backups[-1]["label"])


def run_tool(argv: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    """Run a program; its stdout, or a RuntimeError naming its last line of error output."""
    # PGCONNECT_TIMEOUT bounds an unreachable server; the DSN may carry its own.
    full_env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10"), **(env or {})}
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=full_env)
    if result.returncode != 0:
        lines = [
            line.strip()
            for line in (result.stderr.strip() or result.stdout.strip()).splitlines()
            if line.strip() and not line.strip().startswith("HINT")
        ]
        errors = [line for line in lines if line.startswith("ERROR")]
        message = (errors or lines or [f"exit {result.returncode}"])[-1]
        raise RuntimeError(f"{what} failed: {message}")
    return result.stdout
