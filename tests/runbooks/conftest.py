"""Fixtures for the drill tests: a real PostgreSQL, a moto server, stand-in region endpoints, a plan."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from drill_helpers import BUCKET, PRIMARY, SECONDARY, Regions, aws, make_plan
from psycopg import sql

from rollout_policies.env.services import MotoServer, PostgreSQL
from rollout_policies.plan.model import Plan
from runbooks.standin import RegionEndpoint


@pytest.fixture
def plan() -> Plan:
    return make_plan()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    with PostgreSQL(tmp_path_factory.mktemp("drill-pg")) as server:
        yield server


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("drill-moto")) as server:
        yield server


@pytest.fixture
def s3(moto: MotoServer) -> Any:
    moto.reset()  # each test starts with no buckets, zones or health checks
    client = aws("s3", moto)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def route53(moto: MotoServer, s3: Any) -> Any:
    return aws("route53", moto)  # after the s3 fixture, so the reset happened first


@pytest.fixture
def app_db(pg_server: PostgreSQL, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh application database with the verified tables and some rows; yields its DSN."""
    name = f"app_{request.node.name[:40].lower().replace('[', '_').replace(']', '')}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = pg_server.dsn_for(name)
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
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def regions() -> Iterator[Regions]:
    """Two loopback HTTP servers standing in for the regions' endpoints (no pod serves on kwok nodes)."""
    with RegionEndpoint(PRIMARY) as primary, RegionEndpoint(SECONDARY) as secondary:
        yield Regions(primary, secondary)


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
