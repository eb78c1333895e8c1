"""Point-in-time recovery for the restore drill: mark a recovery target at the source, restore to it.

``mark_recovery_target`` picks the moment to recover to while the plan's verify_tables are briefly
locked against writes (milliseconds: only a snapshot is exported under the lock), so the tables'
figures read in that snapshot are exactly what a restore to that moment must hold; it then makes
sure the WAL past that moment is in the archive. ``RestoredDatabase`` runs ``pgbackrest restore
--type=time`` into a fresh data folder and a fresh PostgreSQL on it (Unix socket only, paused at the
target, never promoted, never archiving), and stops and removes it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from runbooks.backup import TableFingerprint, pgbackrest_binary, postgres_tool, run_tool, table_fingerprints

# pg_controldata's labels -> the settings a hot standby needs at least at the source's values.
CONTROL_SETTINGS = {
    "max_connections setting": "max_connections",
    "max_worker_processes setting": "max_worker_processes",
    "max_wal_senders setting": "max_wal_senders",
    "max_prepared_xacts setting": "max_prepared_transactions",
    "max_locks_per_xact setting": "max_locks_per_transaction",
}


@dataclass(frozen=True)
class RecoveryTarget:
    at: datetime  # recovery_target_time
    newest_commit: datetime  # the source's newest commit at that moment
    commit_timestamps: bool  # False: track_commit_timestamp is off, newest_commit is ``at`` itself
    tables: dict[str, TableFingerprint]
    wal_segment: str  # the segment that holds the moment; archived before the restore starts


def mark_recovery_target(dsn: str, tables: tuple[str, ...], archive_wait: float) -> RecoveryTarget:
    """Lock ``tables`` against writes, export a snapshot and read the time, unlock; figures from the
    snapshot; a commit after the moment (so recovery sees where to stop) and a WAL switch; wait until
    the archiver has shipped that segment."""
    locked = sql.SQL(", ").join(sql.Identifier(*t.split(".", 1)) for t in tables)
    with (
        psycopg.connect(dsn, connect_timeout=10) as marker,
        psycopg.connect(dsn, connect_timeout=10) as reader,
    ):
        marker.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        # SHARE mode waits for open writers of these tables and holds new ones off; readers go on.
        marker.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(locked))
        row = marker.execute(
            "SELECT pg_export_snapshot(), clock_timestamp(), current_setting('track_commit_timestamp')"
        ).fetchone()
        assert row is not None
        snapshot, at, tracking = str(row[0]), row[1], row[2] == "on"
        newest = at
        if tracking:
            last = marker.execute("SELECT timestamp FROM pg_last_committed_xact()").fetchone()
            if last is not None and last[0] is not None:
                newest = min(last[0], at)
        reader.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        time.sleep(0.01)  # commits after the lock get timestamps clearly after ``at``
        marker.commit()  # the lock ends here; the reader keeps the snapshot
        figures = table_fingerprints(reader, tables)
        reader.commit()
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT txid_current()")  # a commit after the target: recovery stops before it
        segment_row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert segment_row is not None
        segment = str(segment_row[0])
        _wait_archived(conn, segment, archive_wait)
    return RecoveryTarget(at, newest, tracking, figures, segment)


def _wait_archived(conn: psycopg.Connection[Any], segment: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        row = conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
        archived = str(row[0] or "") if row else ""
        if archived[:24] >= segment:
            return
        if time.monotonic() > deadline:
            failed = f"; last failed: {row[1]}" if row and row[1] else ""
            raise RuntimeError(
                f"WAL segment {segment} not archived within {wait:g}s (last archived: {archived or 'none'}"
                f"{failed}): is archive_command failing?"
            )
        time.sleep(0.2)


def _owner() -> str | None:
    """PostgreSQL refuses to run as root: as root the restored cluster belongs to ``postgres``."""
    return "postgres" if os.geteuid() == 0 else None


class RestoredDatabase:
    """A restored data folder and the PostgreSQL serving it, in a temporary folder of its own."""

    def __init__(self, env: dict[str, str], dbname: str) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="mh-pitr-"))
        os.chmod(self.workdir, 0o755)
        self.data_dir = self.workdir / "data"
        self.socket_dir = self.workdir / "run"
        self.log_path = self.workdir / "postgresql.log"
        self.dbname = dbname
        # The restore runs here, not on the database host: no pg1-host, this data folder.
        self.env = {k: v for k, v in env.items() if not k.startswith("PGBACKREST_PG1_")}
        self.env["PGBACKREST_PG1_PATH"] = str(self.data_dir)
        self.process: subprocess.Popen[bytes] | None = None

    def restore(self, target: datetime) -> None:
        self.data_dir.mkdir(mode=0o700)
        stamp = target.isoformat(sep=" ", timespec="microseconds")
        run_tool(
            [pgbackrest_binary(), "restore", "--type=time", f"--target={stamp}", "--target-action=pause",
             f"--pg1-path={self.data_dir}", "--archive-mode=off"],
            "pgbackrest restore", self.env,
        )  # fmt: skip

    def start(self, timeout: float) -> None:
        """Start PostgreSQL on the restored folder and wait until replay pauses at the target."""
        self.socket_dir.mkdir()
        conf, hba = self.workdir / "drill.conf", self.workdir / "drill_hba.conf"
        # The drill's own configuration: the source's may name its own paths, ports and archiving.
        conf.write_text(
            "listen_addresses = ''\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "archive_mode = off\nhot_standby = on\nshared_buffers = 128MB\n"
            + "".join(f"{name} = {value}\n" for name, value in self._standby_minimums().items())
        )
        hba.write_text("local all all trust\n")
        user = _owner()
        if user:
            entry = pwd.getpwnam(user)
            for path in (self.workdir, self.socket_dir, conf, hba, self.data_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            subprocess.run(["chown", "-R", f"{user}:", str(self.data_dir)], check=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [postgres_tool("postgres"), "-D", str(self.data_dir), "-c", f"config_file={conf}",
                 "-c", f"hba_file={hba}", "-c", "ident_file=/dev/null"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **self.env}, cwd=self.workdir,
                user=user, group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the restored PostgreSQL stopped: {self._fatal()}")
            with contextlib.suppress(psycopg.OperationalError), self.connect() as conn:
                row = conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone()
                if row and row[0] == "paused":
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replay did not reach the target within {timeout:g}s: {self._fatal()}")
            time.sleep(0.2)

    def _standby_minimums(self) -> dict[str, str]:
        """Settings a hot standby must have at least at the source's values (else recovery aborts
        with "insufficient parameter settings"), read from the restored control file."""
        out = run_tool([postgres_tool("pg_controldata"), str(self.data_dir)], "pg_controldata")
        found = {}
        for line in out.splitlines():
            label, _, value = line.partition(":")
            name = CONTROL_SETTINGS.get(label.strip())
            if name and value.strip().isdigit():
                found[name] = value.strip()
        return found

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(self.socket_dir), dbname=self.dbname, user="postgres", connect_timeout=5, autocommit=True
        )

    def newest_commit(self) -> datetime | None:
        with self.connect() as conn:
            row = conn.execute("SELECT pg_last_xact_replay_timestamp()").fetchone()
        return row[0] if row else None

    def fingerprints(self, tables: tuple[str, ...]) -> dict[str, TableFingerprint]:
        with self.connect() as conn:
            return table_fingerprints(conn, tables)

    def _fatal(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "no log"
        fatal = [line for line in lines if "FATAL" in line or "PANIC" in line]
        return ((fatal or lines or ["no log"])[-1])[-300:]

    def remove(self) -> None:
        """Stop the server this object started (by its pid) and delete the folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)
