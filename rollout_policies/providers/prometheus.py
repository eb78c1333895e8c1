"""Prometheus: a PromQL instant query over the HTTP API (``/api/v1/query``), evaluated at ``now``.

An empty vector and NaN are no data. The returned sample's timestamp is the observation time; a
series whose target stopped answering gets Prometheus's staleness marker and drops out of the
result, so a dead exporter reads as no data rather than as its last good value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from rollout_policies.core.measurement import Measurement
from rollout_policies.errors import UserError
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


class PromQLClient(Protocol):
    """The seam: one instant query; returns the response's ``data`` object."""

    def instant_query(self, promql: str, at: datetime) -> Mapping[str, Any]: ...


class HttpPromQLClient:
    """The real client: Prometheus's HTTP API through httpx."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, http: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.http = http or httpx.Client(timeout=timeout)

    def instant_query(self, promql: str, at: datetime) -> Mapping[str, Any]:
        try:
            response = self.http.get(
                f"{self.url}/api/v1/query", params={"query": promql, "time": f"{at.timestamp():.3f}"}
            )
        except httpx.TimeoutException as err:
            raise TransientQueryFailure(f"timed out asking {self.url}: {type(err).__name__}") from err
        except httpx.TransportError as err:
            raise TransientQueryFailure(f"cannot reach {self.url}: {err}") from err
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("status") == "error":
            problem = f"{body.get('errorType', 'error')}: {body.get('error', '')}".strip()
            if response.status_code >= 500 and body.get("errorType") != "execution":
                raise TransientQueryFailure(f"HTTP {response.status_code}: {problem}")
            raise QueryFailed(problem)
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientQueryFailure(f"HTTP {response.status_code} from {self.url}")
        if response.status_code != 200 or not isinstance(body, dict) or "data" not in body:
            raise QueryFailed(f"HTTP {response.status_code} from {self.url}: not a Prometheus API answer")
        data: Mapping[str, Any] = body["data"]
        return data


def reading_from(data: Mapping[str, Any]) -> Reading:
    """One value from an instant query's result: a scalar, or a vector of exactly one series."""
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar" and isinstance(result, list):
        sample = result
    elif result_type == "vector" and isinstance(result, list):
        if not result:
            raise NoValues("the query returned an empty vector")
        if len(result) > 1:
            raise QueryFailed(
                f"the query returned {len(result)} series; a gate needs one (aggregate it, e.g. sum(...))"
            )
        sample = result[0].get("value")
    else:
        raise QueryFailed(f"unexpected result type {result_type!r}; use a query that returns a number")
    try:
        stamp, text = sample
        observed_at = datetime.fromtimestamp(float(stamp), tz=UTC)
    except (TypeError, ValueError) as err:
        raise QueryFailed(f"malformed sample {sample!r}") from err
    return Reading(to_float(text, "the sample"), observed_at)


class PrometheusProvider:
    """PromQL in ``source.query``; the server URL comes from settings (``ROLLOUT_PROMETHEUS_URL``)."""

    name = "prometheus"

    def __init__(
        self,
        *,
        url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        client: PromQLClient | None = None,
    ) -> None:
        if client is None:
            if not url:
                raise UserError("prometheus: no server URL (set ROLLOUT_PROMETHEUS_URL or prometheus_url)")
            client = HttpPromQLClient(url, timeout=timeout)
        self.client = client
        self.attempts = attempts

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)

        def read() -> Reading:
            if not source.query.strip():
                raise QueryFailed("the source has no PromQL query")
            return reading_from(self.client.instant_query(source.query, now))

        return measure(self.name, metric, source, now, read, attempts=self.attempts)

    def is_online(self) -> bool:
        try:
            with_retries(lambda: self.client.instant_query("vector(1)", datetime.now(UTC)), attempts=1)
        except Exception:
            return False
        return True
