"""Database backups in S3: take a pg_dump with a manifest of row counts and checksums, and find the newest.

A backup is two objects under ``<prefix>/<YYYYmmddTHHMMSSZ>/``: ``<database>.dump`` (pg_dump custom
format) and ``manifest.json`` (when it was taken, the dump's SHA-256, and per verified table its row
count and checksum). The table figures and the dump come from one exported snapshot, so the manifest
describes exactly the data in the dump. The restore drill checks the restored data against it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from rollout_policies.errors import UserError

STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
MANIFEST_NAME = "manifest.json"
DUMP_SUFFIX = ".dump"


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    checksum: str  # md5 of every row's text, in a stable order


@dataclass(frozen=True)
class BackupObject:
    """A dump found in S3."""

    bucket: str
    key: str
    taken_at: datetime

    @property
    def manifest_key(self) -> str:
        return self.key.rsplit("/", 1)[0] + "/" + MANIFEST_NAME


def postgres_tool(name: str) -> str:
    """The path of pg_dump / pg_restore: on PATH, else Debian's PostgreSQL 15 folder."""
    found = shutil.which(name)
    if found:
        return found
    debian = Path("/usr/lib/postgresql/15/bin") / name
    if debian.exists():
        return str(debian)
    raise UserError(f"{name} not found on PATH (install the PostgreSQL client tools)")


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


def _stamp_of(key: str) -> datetime | None:
    parts = key.rsplit("/", 2)
    if len(parts) < 2:
        return None
    try:
        return datetime.strptime(parts[-2], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def make_backup(
    *, dsn: str, s3: Any, bucket: str, prefix: str, tables: Iterable[str], now: datetime
) -> BackupObject:
    """Dump the database at ``dsn`` and upload the dump and its manifest; returns the dump's location."""
    tables = tuple(tables)
    dbname = conninfo_to_dict(dsn).get("dbname") or "postgres"
    taken_at = now.astimezone(UTC).replace(microsecond=0)  # the folder name keeps whole seconds
    stamp = taken_at.strftime(STAMP_FORMAT)
    folder = f"{prefix.strip('/')}/{stamp}".lstrip("/")
    key = f"{folder}/{dbname}{DUMP_SUFFIX}"
    with tempfile.TemporaryDirectory(prefix="markethub-backup-") as tmp:
        dump_path = Path(tmp) / f"{dbname}{DUMP_SUFFIX}"
        # One repeatable-read snapshot for both the figures and the dump: the manifest matches the dump.
        with psycopg.connect(dsn) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                snapshot_row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                assert snapshot_row is not None
                fingerprints = table_fingerprints(conn, tables)
                run_tool(
                    [
                        postgres_tool("pg_dump"),
                        "--format=custom",
                        f"--snapshot={snapshot_row[0]}",
                        f"--file={dump_path}",
                        f"--dbname={dsn}",
                    ],
                    "pg_dump",
                )
        manifest = {
            "database": dbname,
            "taken_at": taken_at.isoformat().replace("+00:00", "Z"),
            "format": "pg_dump custom",
            "dump_key": key,
            "dump_sha256": _sha256(dump_path),
            "tables": {name: {"rows": fp.rows, "checksum": fp.checksum} for name, fp in fingerprints.items()},
        }
        s3.upload_file(str(dump_path), bucket, key)
        # The manifest goes last: a dump without one is never picked as the newest backup.
        s3.put_object(
            Bucket=bucket, Key=f"{folder}/{MANIFEST_NAME}", Body=json.dumps(manifest, indent=2).encode()
        )
    return BackupObject(bucket=bucket, key=key, taken_at=taken_at)


def latest_backup(s3: Any, bucket: str, prefix: str) -> BackupObject | None:
    """The newest dump under ``prefix`` that has a manifest beside it, by the time in its folder name."""
    paginator = s3.get_paginator("list_objects_v2")
    keys: set[str] = set()
    modified: dict[str, datetime] = {}
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix.strip("/")):
        for item in page.get("Contents", []):
            keys.add(item["Key"])
            modified[item["Key"]] = item["LastModified"]
    found = []
    for key in keys:
        if not key.endswith(DUMP_SUFFIX):
            continue
        backup = BackupObject(bucket=bucket, key=key, taken_at=_stamp_of(key) or modified[key])
        if backup.manifest_key in keys:
            found.append(backup)
    return max(found, key=lambda b: (b.taken_at, b.key), default=None)


def read_manifest(s3: Any, backup: BackupObject) -> dict[str, Any]:
    body = s3.get_object(Bucket=backup.bucket, Key=backup.manifest_key)["Body"].read()
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def download(s3: Any, backup: BackupObject, dest: Path) -> str:
    """Download the dump; returns its SHA-256."""
    s3.download_file(backup.bucket, backup.key, str(dest))
    return _sha256(dest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_tool(argv: list[str], what: str) -> None:
    # PGCONNECT_TIMEOUT bounds an unreachable server; the DSN may carry its own.
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10")}
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        message = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise RuntimeError(f"{what} failed: {message[-1] if message else f'exit {result.returncode}'}")
