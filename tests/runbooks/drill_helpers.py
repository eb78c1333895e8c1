"""Helpers for the drill tests: the smallest plan, AWS clients for moto, stand-in regions, clocks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from devenv.health_standin import RegionEndpoint
from devenv.services import MotoServer, PostgreSQL
from rollout_policies.cli.main import main
from rollout_policies.plan.model import Plan
from runbooks.region_failover import FailoverTarget, RegionTarget

PRIMARY, SECONDARY = "us-east-1", "us-west-2"
BUCKET, PREFIX = "markethub-backups", "pgbackrest/markethub"
STANZA = "markethub"  # make_plan's service: the stanza the drills read
VERIFY_TABLES = ("orders", "public.customers")


def make_plan(*, rto: str = "5m", rpo: str = "1h", verify_tables: tuple[str, ...] = VERIFY_TABLES) -> Plan:
    """The smallest plan the drills read: only its objectives matter to them."""
    return Plan.model_validate(
        {
            "name": "drill-test",
            "service": "markethub",
            "decision_authority": ["sre"],
            "metrics": [],
            "stages": [],
            "triggers": [],
            "objectives": {
                "backups": [
                    {"kind": "incremental", "every": "1h", "retention": "7d"},
                    {"kind": "full", "every": "1d", "retention": "30d"},
                ],
                "disaster_recovery": {
                    "regions": [PRIMARY, SECONDARY],
                    "primary": PRIMARY,
                    "rto": rto,
                    "rpo": rpo,
                    "drill_every": "30d",
                    "verify_tables": list(verify_tables),
                },
            },
        }
    )


def aws(service: str, moto: MotoServer) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto.endpoint_url,
        region_name=PRIMARY,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def scratch_databases(postgres: PostgreSQL) -> list[str]:
    with psycopg.connect(postgres.dsn) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'drill_restore_%'").fetchall()
    return [row[0] for row in rows]


@dataclass
class Regions:
    primary: RegionEndpoint
    secondary: RegionEndpoint
    zone: str

    @property
    def record(self) -> str:
        return f"api.{self.zone}"

    def target(self, stacks_dir: Path, bucket: str) -> FailoverTarget:
        return FailoverTarget(
            zone=self.zone,
            record=self.record,
            regions={
                e.region: RegionTarget(host=f"{e.region}.{self.record}", probe_url=e.url)
                for e in (self.primary, self.secondary)
            },
            bucket=bucket,
            prefix=PREFIX,
            stacks_dir=stacks_dir,
        )


def put_backup_sets(
    s3: Any,
    bucket: str,
    *ages_hours: float,
    missing: tuple[int, ...] = (),
    stanza: str = STANZA,
    prefix: str = PREFIX,
) -> list[str]:
    """A pgBackRest repository in S3 as pgBackRest writes it (``backup.info`` and each set's
    ``backup.manifest``): a full ``ages_hours[0]`` hours ago, then incrementals on it. The file
    format is what tests/runbooks/test_pgbackrest_e2e.py reads back from a real pgBackRest. Sets at
    the ``missing`` positions are listed but their files are gone. Returns the labels."""
    import json

    prefix = f"{prefix}/backup/{stanza}/"
    labels: list[str] = []
    lines = ["[backrest]", "backrest-format=5", "", "[backup:current]"]
    for index, age in enumerate(ages_hours):
        stopped = int((now_utc() - timedelta(hours=age)).timestamp())
        stamp = datetime.fromtimestamp(stopped, UTC).strftime("%Y%m%d-%H%M%S")
        label = f"{stamp}F" if index == 0 else f"{labels[0]}_{stamp}I"
        data = {
            "backup-type": "full" if index == 0 else "incr",
            "backup-timestamp-start": stopped - 60,
            "backup-timestamp-stop": stopped,
            "backup-prior": labels[-1] if labels else None,
            "backup-reference": list(labels) or None,
        }
        lines.append(f"{label}={json.dumps(data)}")
        if index not in missing:
            s3.put_object(Bucket=bucket, Key=f"{prefix}{label}/backup.manifest", Body=b"[backup]\n")
        labels.append(label)
    s3.put_object(Bucket=bucket, Key=f"{prefix}backup.info", Body="\n".join(lines).encode())
    return labels


def now_utc() -> datetime:
    return datetime.now(UTC)


def hours_ago(hours: float) -> datetime:
    return now_utc() - timedelta(hours=hours)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        # The console script exits with main's return value; click returns a command's exit status.
        code = int(main(argv) or 0)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
