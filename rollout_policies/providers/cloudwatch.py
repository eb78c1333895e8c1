"""CloudWatch: one metric statistic through boto3 ``get_metric_data``, the newest point in the window.

The source names one metric (``options.metric_name``, or ``query``) or several
(``options.metrics``: query id -> metric name, combined by ``query``, an arithmetic expression such
as ``100 * healthy / (healthy + unhealthy)``), with ``options.namespace``, ``options.dimensions`` (a
mapping), ``options.stat`` (default Average) and ``options.period`` (seconds, default 60).
The window looked at is the source's ``max_age`` back from ``now``, so an
empty window is no data and a stale metric cannot pass. ``endpoint_url`` points it at moto in tests.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
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


_METRIC_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")  # CloudWatch's rule for query ids
_OPERATORS: dict[type[ast.AST], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def named_metrics(source: MetricSource) -> dict[str, str]:
    """Query id -> CloudWatch metric name. ``options.metrics`` names several; otherwise the one metric
    is ``options.metric_name`` (or ``query``) under the id ``gate``."""
    metrics = source.options.get("metrics")
    if metrics is None:
        name = source.options.get("metric_name") or source.query.strip()
        if not name:
            raise QueryFailed("the source needs options.metric_name, options.metrics or a query")
        return {"gate": str(name)}
    if not isinstance(metrics, Mapping) or not metrics:
        raise QueryFailed(
            "options.metrics must map query ids to metric names, e.g. {unhealthy: UnHealthyHostCount}"
        )
    for metric_id in metrics:
        if not _METRIC_ID.match(str(metric_id)):
            raise QueryFailed(
                f"options.metrics: {metric_id!r} is not an id (a lowercase letter, then letters, digits, _)"
            )
    return {str(k): str(v) for k, v in metrics.items()}


def metric_data_request(source: MetricSource, now: datetime) -> dict[str, Any]:
    """The ``get_metric_data`` arguments for a source at ``now``; bad options raise QueryFailed."""
    options = source.options
    namespace = options.get("namespace")
    if not namespace:
        raise QueryFailed("the source needs options.namespace")
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
                "Id": metric_id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": str(namespace),
                        "MetricName": metric_name,
                        "Dimensions": [{"Name": str(k), "Value": str(v)} for k, v in dimensions.items()],
                    },
                    "Period": period,
                    "Stat": str(options.get("stat", "Average")),
                },
                "ReturnData": True,
            }
            for metric_id, metric_name in named_metrics(source).items()
        ],
        "StartTime": now - source.max_age,
        "EndTime": now,
        "ScanBy": "TimestampDescending",
    }


def evaluate(expression: str, values: Mapping[str, float]) -> float:
    """Arithmetic (+ - * / and parentheses) over the named metrics' newest values.

    Done here rather than as a CloudWatch metric-math expression so the same plan reads the same
    number from AWS and from moto, which returns nothing for expressions.
    """

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise QueryFailed(f"the query names {node.id!r}, which options.metrics does not define")
            return values[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = walk(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                return math.nan  # e.g. no hosts at all: no data, not a crash and not a pass
            return _OPERATORS[type(node.op)](left, right)
        raise QueryFailed(f"the query {expression!r} is not arithmetic over options.metrics ids")

    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise QueryFailed(f"the query {expression!r} is not an arithmetic expression") from None
    return walk(tree)


def reading_from(response: Mapping[str, Any], source: MetricSource | None = None) -> Reading:
    """The newest point of each named metric, combined by the query when the source names several."""
    results = response.get("MetricDataResults") or []
    if not results:
        raise NoValues("no metric data results")
    newest: dict[str, tuple[datetime, float]] = {}
    for result in results:
        if result.get("StatusCode") == "InternalError":
            raise TransientQueryFailure(f"CloudWatch reported an internal error: {result.get('Messages')}")
        points = list(zip(result.get("Timestamps") or [], result.get("Values") or [], strict=False))
        if not points:
            raise NoValues(f"no data points in the window for {result.get('Id', 'the metric')}")
        observed_at, value = max(points, key=lambda point: point[0])
        newest[str(result.get("Id", "gate"))] = (as_utc(observed_at), float(value))
    # The oldest of the newest points: the combination is only as fresh as its stalest part.
    observed = min(moment for moment, _ in newest.values())
    if source is None or source.options.get("metrics") is None:
        return Reading(next(iter(newest.values()))[1], observed)
    return Reading(
        evaluate(source.query.strip(), {key: value for key, (_, value) in newest.items()}), observed
    )


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
            return reading_from(self.client.get_metric_data(**metric_data_request(source, now)), source)

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
