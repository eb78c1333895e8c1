"""`rollout env up --database`: PostgreSQL archiving WAL to pgBackRest on moto, backed up and restored.

Real PostgreSQL, pgBackRest and the rig's TLS front in front of a real moto server, on 127.0.0.1;
the clusters of `env up` are left out (they play no part in the database). The backup and the
drill run through the command line with the environment's env.json, as a person would locally.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from devenv.local import LocalEnvironment
from devenv.services import MotoServer
from rollout_policies.cli.main import main
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

pytestmark = pytest.mark.services


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = int(main(argv) or 0)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out + err


def test_the_environments_database_archives_backs_up_and_restores_to_a_point_in_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = LocalEnvironment(tmp_path / "env")
    with MotoServer(tmp_path / "moto") as moto:
        lines: list[str] = []
        database = environment.start_database(moto, lines.append)
        try:
            env_file = tmp_path / "env.json"
            env_file.write_text(json.dumps({"moto_url": moto.endpoint_url, "database": database}))
            with psycopg.connect(database["dsn"]) as conn:
                for table in load_plan(DEFAULT_PLAN).objectives.disaster_recovery.verify_tables:
                    conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, payload text)')
                    conn.execute(
                        f'INSERT INTO "{table}" SELECT g, md5(g::text) FROM generate_series(1, 500) g'
                    )

            code, out = run(["drill", "backup", "--type", "full", "--env", str(env_file)], capsys)
            assert code == 0, out
            assert "F in s3://markethub-backups-local/pgbackrest/markethub-mobile" in out

            reports = tmp_path / "drills"
            code, out = run(
                [
                    "drill",
                    "backup-restore",
                    "--execute",
                    "--env",
                    str(env_file),
                    "--report-dir",
                    str(reports),
                ],
                capsys,
            )
            assert code == 0, out
            report = json.loads(sorted((reports / "backup-restore").glob("*.json"))[-1].read_text())
            assert report["verdict"] == "passed"
            verify = next(step for step in report["steps"] if step["name"] == "verify-tables")
            assert verify["detail"].startswith("users: 500 rows")
            rpo = next(o for o in report["objectives"] if o["name"].startswith("RPO"))
            assert (rpo["measured_seconds"], rpo["met"]) == (0.0, True)  # all in the base backup
        finally:
            assert LocalEnvironment.stop_database(database) == []
    assert lines == ["[env] PostgreSQL with WAL archiving to pgBackRest on moto: starting"]
