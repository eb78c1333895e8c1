"""Fixtures for the drill tests: a real PostgreSQL, a moto server, stand-in region endpoints, a plan."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from drill_helpers import BUCKET, PRIMARY, SECONDARY, Regions, aws, make_plan
from psycopg import sql

from devenv.health_standin import RegionEndpoint
from devenv.services import MotoServer, PostgreSQL
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan


@pytest.fixture
def plan() -> Plan:
    return make_plan()


@pytest.fixture
def unique() -> str:
    """A suffix for this test's bucket and hosted zone: tests share the session's moto server, so
    they keep apart by name rather than by resetting it under other tests."""
    return secrets.token_hex(4)


@pytest.fixture
def bucket(unique: str) -> str:
    return f"{BUCKET}-{unique}"


@pytest.fixture
def s3(moto_server: MotoServer, bucket: str) -> Any:
    client = aws("s3", moto_server)
    client.create_bucket(Bucket=bucket)
    return client


@pytest.fixture
def route53(moto_server: MotoServer) -> Any:
    return aws("route53", moto_server)


@pytest.fixture(scope="session")
def app_db(postgres: PostgreSQL) -> Iterator[str]:
    """An application database with the verified tables and some rows; yields its DSN. The drills only
    read it (a restore goes to a scratch database), so the session shares one."""
    name = f"drill_app_{secrets.token_hex(4)}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = postgres.dsn_for(name)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text NOT NULL)")
        conn.execute(
            "CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers, "
            "total numeric(10,2))"
        )
        conn.execute(
            "INSERT INTO customers SELECT g, 'user' || g || '@example.com' FROM generate_series(1, 200) g"
        )
        conn.execute(
            "INSERT INTO orders SELECT g, 1 + g % 200, (g * 7 % 1000) / 10.0 FROM generate_series(1, 1500) g"
        )
    yield dsn
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def regions(unique: str) -> Iterator[Regions]:
    """Two loopback HTTP servers standing in for the regions' endpoints (no pod serves on kwok nodes)."""
    with RegionEndpoint(PRIMARY) as primary, RegionEndpoint(SECONDARY) as secondary:
        yield Regions(primary, secondary, zone=f"t{unique}.markethub.test.")


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q", "-b", "main"],
        ["config", "user.email", "drills@example.com"],
        ["config", "user.name", "drills"],
        ["commit", "-q", "--allow-empty", "-m", "start"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


@pytest.fixture
def plan_db(postgres: PostgreSQL, unique: str) -> Any:
    """A database with the packaged plan's verify_tables."""
    name = f"plan_{unique}"
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = postgres.dsn_for(name)
    with psycopg.connect(dsn) as conn:
        for table in load_plan(DEFAULT_PLAN).objectives.disaster_recovery.verify_tables:
            conn.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, payload text)')
            conn.execute(f'INSERT INTO "{table}" SELECT g, md5(g::text) FROM generate_series(1, 300) g')
    yield dsn
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
