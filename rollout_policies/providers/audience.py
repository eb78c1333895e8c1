"""The cohort's candidates from the analytics database (PostgreSQL, ``ROLLOUT_SQL_DSN``).

The analytics team provides one relation (a view) with a row per user; ``CANDIDATES_QUERY`` is the
default query, and ``rollout audience select --query`` can replace it with any SELECT returning the
same columns in the same order. The rows stay in memory: only pseudonyms leave this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rollout_policies.core.audience import Candidate, CohortError
from rollout_policies.providers.base import DEFAULT_TIMEOUT, QueryFailed
from rollout_policies.providers.sql import PsycopgRunner, SqlRunner

COLUMNS = (
    "user_id",
    "platform",
    "city",
    "device",
    "orders_3_months",
    "sessions_per_month",
    "positive_service_history",
    "previous_beta",
)
CANDIDATES_QUERY = f"SELECT {', '.join(COLUMNS)} FROM audience_candidates"


def candidate_from(row: Sequence[Any]) -> Candidate:
    if len(row) != len(COLUMNS):
        raise CohortError(
            f"the candidates query returned {len(row)} columns; it must return {', '.join(COLUMNS)}"
        )
    user_id, platform, city, device, orders, sessions, positive, previous = row
    return Candidate(
        user_id=str(user_id),
        platform=str(platform).lower(),
        city=str(city or ""),
        device=str(device or ""),
        orders_3_months=int(orders or 0),
        sessions_per_month=float(sessions or 0),
        positive_service_history=bool(positive),
        previous_beta=bool(previous),
    )


def fetch_candidates(
    dsn: str | None, *, query: str = CANDIDATES_QUERY, runner: SqlRunner | None = None
) -> list[Candidate]:
    """Every candidate row; a missing DSN or a failing query is a one-line CohortError."""
    if runner is None:
        if not dsn:
            raise CohortError("no database DSN: set ROLLOUT_SQL_DSN")
        runner = PsycopgRunner(dsn, timeout=max(DEFAULT_TIMEOUT, 30.0))
    try:
        rows = runner.fetch(query, None)
    except QueryFailed as err:
        raise CohortError(f"the candidates query failed: {err}") from err
    return [candidate_from(row) for row in rows]
