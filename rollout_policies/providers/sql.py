"""SQL: an analytics database (PostgreSQL, through psycopg 3) answering one row ``(value, observed_at)``.

A one-column row ``(value)`` is an aggregate computed by the query itself, observed at ``now``.
The query runs in a read-only transaction with a statement timeout. It may use ``%(now)s`` for the
evaluation time (then write a literal percent sign as ``%%``). No row or a NULL value is no data;
more than one row, or a row of another shape, is an error. The DSN comes from settings
(``ROLLOUT_SQL_DSN``) or from the variable a source names in ``options.dsn_env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol

from rollout_policies.core.measurement import Measurement
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.base import (
    DEFAULT_ATTEMPTS,
    DEFAULT_TIMEOUT,
    NoValues,
    QueryFailed,
    Reading,
    TransientQueryFailure,
    as_utc,
    measure,
    to_float,
    with_retries,
)


class SqlRunner(Protocol):
    """The seam: run one read-only query and return all its rows."""

    def fetch(self, query: str, params: Mapping[str, Any] | None) -> Sequence[Sequence[Any]]: ...


class PsycopgRunner:
    """The real runner: a fresh psycopg connection per query (gates run minutes apart)."""

    def __init__(self, dsn: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.dsn = dsn
        self.timeout = timeout

    def fetch(self, query: str, params: Mapping[str, Any] | None) -> Sequence[Sequence[Any]]:
        import psycopg

        try:
            with psycopg.connect(
                self.dsn,
                connect_timeout=max(1, round(self.timeout)),
                options=f"-c statement_timeout={int(self.timeout * 1000)}",
            ) as connection:
                connection.read_only = True  # a gate query must never change the analytics data
                with connection.cursor() as cursor:
                    cursor.execute(query, params)
                    if cursor.description is None:
                        raise QueryFailed("the statement returned no rows at all (is it a SELECT?)")
                    return cursor.fetchall()
        except psycopg.errors.QueryCanceled as err:
            raise QueryFailed(f"timed out after {self.timeout:g}s: {_first_line(err)}") from err
        except psycopg.OperationalError as err:
            raise TransientQueryFailure(f"cannot reach the database: {_first_line(err)}") from err
        except psycopg.Error as err:
            raise QueryFailed(_first_line(err)) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def reading_from(rows: Sequence[Sequence[Any]], now: datetime) -> Reading:
    if not rows:
        raise NoValues("the query returned no row")
    if len(rows) > 1:
        raise QueryFailed(f"the query returned {len(rows)} rows; it must return one (value, observed_at)")
    row = rows[0]
    if len(row) == 1:
        return Reading(to_float(row[0], "the value"), now)
    if len(row) != 2:
        raise QueryFailed(f"the row has {len(row)} columns; it must be (value, observed_at) or (value)")
    value, observed_at = row
    if observed_at is None:
        raise NoValues("observed_at is NULL")
    if isinstance(observed_at, datetime):
        moment = as_utc(observed_at)
    elif isinstance(observed_at, date):
        moment = datetime(observed_at.year, observed_at.month, observed_at.day, tzinfo=UTC)
    else:
        raise QueryFailed(f"observed_at is a {type(observed_at).__name__}, not a timestamp")
    return Reading(to_float(value, "the value"), moment)


class SqlProvider:
    """SQL in ``source.query``; the DSN comes from settings (``ROLLOUT_SQL_DSN``)."""

    name = "sql"

    def __init__(
        self,
        *,
        dsn: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        runner: SqlRunner | None = None,
    ) -> None:
        self.dsn = dsn
        self.timeout = timeout
        self.runner = runner  # a fixed runner (tests) answers every source, whatever its DSN
        self.attempts = attempts

    def runner_for(self, source: MetricSource) -> SqlRunner:
        if self.runner is not None:
            return self.runner
        dsn_env = source.options.get("dsn_env")
        dsn = os.environ.get(str(dsn_env)) if dsn_env else None
        dsn = dsn or self.dsn
        if not dsn:
            where = (
                f"set {dsn_env} (options.dsn_env) or ROLLOUT_SQL_DSN" if dsn_env else "set ROLLOUT_SQL_DSN"
            )
            raise QueryFailed(f"no database DSN: {where}")
        return PsycopgRunner(dsn, timeout=self.timeout)

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)
        params = {"now": now} if "%(now)s" in source.query else None

        def read() -> Reading:
            if not source.query.strip():
                raise QueryFailed("the source has no SQL query")
            return reading_from(self.runner_for(source).fetch(source.query, params), now)

        return measure(self.name, metric, source, now, read, attempts=self.attempts)

    def is_online(self) -> bool:
        try:
            probe = MetricSource(provider=self.name, query="SELECT 1")
            with_retries(lambda: self.runner_for(probe).fetch("SELECT 1", None), attempts=1)
        except Exception:
            return False
        return True
