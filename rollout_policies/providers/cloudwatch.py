"""CloudWatch: one metric statistic through boto3 ``get_metric_data``, the newest point in the window.

The source names the metric: ``options.namespace``, ``options.metric_name`` (or ``query``),
``options.dimensions`` (a mapping), ``options.stat`` (default Average) and ``options.period``
(seconds, default 60). The window looked at is the source's ``max_age`` back from ``now``, so an
empty window is no data and a stale metric cannot pass. ``endpoint_url`` points it at moto in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
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
    with_retries,
)

_TRANSIENT_CODES = {
    "Throttling",
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
    "RequestLimitExceeded",
}


class CloudWatchClient(Protocol):
    """The seam: boto3's ``get_metric_data`` (keyword arguments in, the response dict out)."""

    def get_metric_data(self, **request: Any) -> Mapping[str, Any]: ...


class Boto3CloudWatch:
    """The real client: boto3 with its own retries off (tenacity bounds them) and short timeouts."""

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.client = boto3.client(
            "cloudwatch",
            endpoint_url=endpoint_url or None,
            region_name=region or "us-east-1",
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            config=Config(
                connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"}
            ),
        )

    def get_metric_data(self, **request: Any) -> Mapping[str, Any]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        try:
            response: Mapping[str, Any] = self.client.get_metric_data(**request)
        except (EndpointConnectionError, ConnectionError, ReadTimeoutError) as err:
            raise TransientQueryFailure(str(err)) from err
        except NoCredentialsError as err:
            raise QueryFailed(f"{err} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)") from err
        except ClientError as err:
            error = err.response.get("Error", {})
            code = str(error.get("Code", "ClientError"))
            message = f"{code}: {error.get('Message', '')}".strip()
            status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in _TRANSIENT_CODES or status >= 500:
                raise TransientQueryFailure(message) from err
            raise QueryFailed(message) from err
        except BotoCoreError as err:
            raise QueryFailed(str(err)) from err
        return response


def metric_data_request(source: MetricSource, now: datetime) -> dict[str, Any]:
    """The ``get_metric_data`` arguments for a source at ``now``; bad options raise QueryFailed."""
    options = source.options
    namespace = options.get("namespace")
    metric_name = options.get("metric_name") or source.query.strip()
    if not namespace or not metric_name:
        raise QueryFailed("the source needs options.namespace and options.metric_name (or query)")
    dimensions = options.get("dimensions") or {}
    if not isinstance(dimensions, Mapping):
        raise QueryFailed("options.dimensions must be a mapping of name to value")
    try:
        period = int(options.get("period", 60))
    except (TypeError, ValueError):
        raise QueryFailed(f"options.period is not a number of seconds: {options.get('period')!r}") from None
    return {
        "MetricDataQueries": [
            {
                "Id": "gate",
                "MetricStat": {
                    "Metric": {
                        "Namespace": str(namespace),
                        "MetricName": str(metric_name),
                        "Dimensions": [{"Name": str(k), "Value": str(v)} for k, v in dimensions.items()],
                    },
                    "Period": period,
                    "Stat": str(options.get("stat", "Average")),
                },
                "ReturnData": True,
            }
        ],
        "StartTime": now - source.max_age,
        "EndTime": now,
        "ScanBy": "TimestampDescending",
    }


def reading_from(response: Mapping[str, Any]) -> Reading:
    results = response.get("MetricDataResults") or []
    if not results:
        raise NoValues("no metric data results")
    result = results[0]
    if result.get("StatusCode") == "InternalError":
        raise TransientQueryFailure(f"CloudWatch reported an internal error: {result.get('Messages')}")
    points = list(zip(result.get("Timestamps") or [], result.get("Values") or [], strict=False))
    if not points:
        raise NoValues("no data points in the window")
    observed_at, value = max(points, key=lambda point: point[0])
    return Reading(float(value), as_utc(observed_at))


class CloudWatchProvider:
    """CloudWatch metrics; settings: ``endpoint_url``, ``region`` (and keys for moto if no env)."""

    name = "cloudwatch"

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        client: CloudWatchClient | None = None,
    ) -> None:
        self.client = client or Boto3CloudWatch(
            endpoint_url=endpoint_url,
            region=region,
            timeout=timeout,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
        )
        self.attempts = attempts

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)

        def read() -> Reading:
            return reading_from(self.client.get_metric_data(**metric_data_request(source, now)))

        return measure(self.name, metric, source, now, read, attempts=self.attempts)

    def is_online(self) -> bool:
        probe = MetricSource(
            provider=self.name,
            query="Ping",
            options={"namespace": "markethub/rollout"},
            max_age=timedelta(minutes=1),
        )
        try:
            with_retries(
                lambda: self.client.get_metric_data(**metric_data_request(probe, datetime.now(UTC))),
                attempts=1,
            )
        except Exception:
            return False
        return True
