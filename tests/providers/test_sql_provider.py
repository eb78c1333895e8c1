"""The SQL provider against a real PostgreSQL (Debian's, started for the session)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from devenv.services import free_port
from rollout_policies.core.measurement import Phase
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.sql import SqlProvider

pytestmark = pytest.mark.services

NOW = datetime.now(UTC).replace(microsecond=0)


def sql(query: str) -> MetricSource:
    return MetricSource(provider="sql", query=query, max_age=timedelta(hours=1))


@pytest.fixture(scope="module")
def analytics(postgres):
    """An analytics database with a daily retention table, as a product analytics team would keep."""
    with psycopg.connect(postgres.dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS provider_analytics")
        admin.execute("CREATE DATABASE provider_analytics")
    dsn = postgres.dsn_for("provider_analytics")
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "CREATE TABLE retention (cohort text, day int, rate numeric, computed_at timestamptz)"
        )
        connection.execute(
            "INSERT INTO retention VALUES"
            " ('beta', 1, 42.5, %(recent)s), ('beta', 7, NULL, %(recent)s), ('limited', 1, 38.0, %(old)s)",
            {"recent": NOW - timedelta(minutes=5), "old": NOW - timedelta(days=2)},
        )
    return SqlProvider(dsn=dsn)


def test_one_row_gives_its_value_and_time(analytics):
    measurement = analytics.query(
        sql("SELECT rate, computed_at FROM retention WHERE cohort = 'beta' AND day = 1"), NOW, metric="d1"
    )

    assert (measurement.metric, measurement.phase, measurement.value) == ("d1", Phase.OK, 42.5)
    assert measurement.observed_at == NOW - timedelta(minutes=5)


def test_now_parameter_is_the_evaluation_time(analytics):
    measurement = analytics.query(sql("SELECT 1.5, %(now)s::timestamptz - interval '1 minute'"), NOW)

    assert (measurement.phase, measurement.value) == (Phase.OK, 1.5)
    assert measurement.observed_at == NOW - timedelta(minutes=1)


def test_no_row_is_no_data(analytics):
    measurement = analytics.query(sql("SELECT rate, computed_at FROM retention WHERE cohort = 'nobody'"), NOW)

    assert measurement.phase is Phase.NO_DATA
    assert "no row" in measurement.message


def test_null_value_is_no_data(analytics):
    measurement = analytics.query(
        sql("SELECT rate, computed_at FROM retention WHERE cohort = 'beta' AND day = 7"), NOW
    )

    assert measurement.phase is Phase.NO_DATA


def test_row_older_than_max_age_is_no_data(analytics):
    query = "SELECT rate, computed_at FROM retention WHERE cohort = 'limited'"

    measurement = analytics.query(sql(query), NOW)

    assert measurement.phase is Phase.NO_DATA
    assert "stale" in measurement.message


def test_several_rows_are_an_error(analytics):
    query = "SELECT rate, computed_at FROM retention WHERE cohort = 'beta'"

    measurement = analytics.query(sql(query), NOW)

    assert measurement.phase is Phase.ERROR
    assert "2 rows" in measurement.message


def test_bad_sql_is_an_error(analytics):
    measurement = analytics.query(sql("SELEC rate FROM retention"), NOW)

    assert measurement.phase is Phase.ERROR
    assert "syntax error" in measurement.message


def test_writes_are_refused_because_the_session_is_read_only(analytics):
    query = "INSERT INTO retention VALUES ('x', 1, 1, now()) RETURNING rate, now()"

    measurement = analytics.query(sql(query), NOW)

    assert measurement.phase is Phase.ERROR
    assert "read-only" in measurement.message


def test_slow_query_is_an_error_after_the_timeout(postgres):
    provider = SqlProvider(dsn=postgres.dsn, timeout=1.0, attempts=1)

    measurement = provider.query(sql("SELECT pg_sleep(3), now()"), NOW)

    assert measurement.phase is Phase.ERROR
    assert "timed out" in measurement.message


def test_unreachable_database_is_an_error_not_a_pass():
    provider = SqlProvider(dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", attempts=2)

    measurement = provider.query(sql("SELECT 1, now()"), NOW)

    assert measurement.phase is Phase.ERROR
    assert "cannot reach the database" in measurement.message


def test_is_online(analytics):
    assert analytics.is_online() is True


def test_one_column_aggregate_is_observed_now(analytics):
    measurement = analytics.query(sql("SELECT avg(rate) FROM retention WHERE rate IS NOT NULL"), NOW)

    assert (measurement.phase, measurement.value, measurement.observed_at) == (Phase.OK, 40.25, NOW)


def test_dsn_from_the_variable_the_source_names(postgres, monkeypatch):
    monkeypatch.setenv("ANALYTICS_DSN", postgres.dsn_for("provider_analytics"))
    source = MetricSource(
        provider="sql",
        query="SELECT count(*) FROM retention",
        options={"dsn_env": "ANALYTICS_DSN"},
    )

    measurement = SqlProvider().query(source, NOW)

    assert (measurement.phase, measurement.value) == (Phase.OK, 3.0)


def test_unset_dsn_variable_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("ANALYTICS_DSN", raising=False)
    source = MetricSource(provider="sql", query="SELECT 1", options={"dsn_env": "ANALYTICS_DSN"})

    measurement = SqlProvider().query(source, NOW)

    assert measurement.phase is Phase.ERROR
    assert "ANALYTICS_DSN" in measurement.message
