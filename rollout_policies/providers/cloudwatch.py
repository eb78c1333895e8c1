"""CloudWatch: one metric statistic through boto3 ``get_metric_data``, the newest point in the window.

The source names one metric (``options.metric_name``, or ``query``) or several
(``options.metrics``: query id -> metric name, combined by ``query``, an arithmetic expression such
as ``100 * healthy / (healthy + unhealthy)``), with ``options.namespace``, ``options.dimensions`` (a
mapping), ``options.stat`` (default Average), ``options.period`` (seconds, default 60) and
``options.region`` (default: the provider's region; Route 53's metrics live in us-east-1 only).
The window looked at is the source's ``max_age`` back from ``now``, so an
empty window is no data and a stale metric cannot pass. ``endpoint_url`` points it at moto in tests.
"""

from __future__ import annotations

import math
import operator
import re
import threading
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
_OPERATORS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
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


_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_]\w*)|(?P<op>[-+*/()]))"
)
_MAX_TOKENS = 200


def _tokens(expression: str) -> list[str]:
    found: list[str] = []
    at = 0
    text = expression.rstrip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:
            raise QueryFailed(f"the query {expression!r} is not an arithmetic expression")
        found.append(match.group(match.lastgroup or "op"))
        at = match.end()
        if len(found) > _MAX_TOKENS:
            raise QueryFailed(f"the query {expression!r} is longer than {_MAX_TOKENS} tokens")
    return found


def evaluate(expression: str, values: Mapping[str, float]) -> float:
    """Arithmetic (+ - * / and parentheses) over the named metrics' newest values.

    Done here rather than as a CloudWatch metric-math expression so the same plan reads the same
    number from AWS and from moto, which returns nothing for expressions. A small parser of its own
    rather than ``ast``: the collector measures in threads, and CPython 3.11's ``ast.parse`` is not
    safe to run in two threads at once (python/cpython#106905: "AST constructor recursion depth
    mismatch").
    """
    tokens = _tokens(expression)
    position = 0
    depth = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        token = peek()
        if token is None:
            raise QueryFailed(f"the query {expression!r} ends too early")
        position += 1
        return token

    def atom() -> float:
        nonlocal depth
        token = take()
        if token in ("-", "+"):
            operand = atom()
            return -operand if token == "-" else operand
        if token == "(":
            depth += 1
            if depth > 32:
                raise QueryFailed(f"the query {expression!r} nests parentheses more than 32 deep")
            value = sum_()
            if peek() != ")":
                raise QueryFailed(f"the query {expression!r} has an unclosed parenthesis")
            take()
            depth -= 1
            return value
        if token[0].isdigit() or token[0] == ".":
            return float(token)
        if token[0].isalpha() or token[0] == "_":
            if token not in values:
                raise QueryFailed(f"the query names {token!r}, which options.metrics does not define")
            return values[token]
        raise QueryFailed(f"the query {expression!r} is not arithmetic over options.metrics ids")

    def product() -> float:
        value = atom()
        while peek() in ("*", "/"):
            op = take()
            right = atom()
            # dividing by zero (no hosts at all, say) is no data: not a crash and not a pass
            value = math.nan if op == "/" and right == 0 else _OPERATORS[op](value, right)
        return value

    def sum_() -> float:
        value = product()
        while peek() in ("+", "-"):
            op = take()
            value = _OPERATORS[op](value, product())
        return value

    if not tokens:
        raise QueryFailed(f"the query {expression!r} is not an arithmetic expression")
    result = sum_()
    if position != len(tokens):
        raise QueryFailed(f"the query {expression!r} is not arithmetic over options.metrics ids")
    return result


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
        def connect(in_region: str | None) -> CloudWatchClient:
            return Boto3CloudWatch(
                endpoint_url=endpoint_url,
                region=in_region,
                timeout=timeout,
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
            )

        self.region = region or "us-east-1"
        self.client = client or connect(region)
        # A metric may name its own region (options.region): Route 53 publishes its health-check
        # metrics in us-east-1 only, whichever region the controller runs in. An injected client
        # answers for every region.
        self._connect = connect if client is None else (lambda _region: self.client)
        self._clients: dict[str, CloudWatchClient] = {self.region: self.client}
        self._clients_lock = threading.Lock()
        self.attempts = attempts

    def client_for(self, source: MetricSource) -> CloudWatchClient:
        """The client of the metric's ``options.region``, or of the provider's own region."""
        region = str(source.options.get("region") or self.region)
        with self._clients_lock:
            if region not in self._clients:
                self._clients[region] = self._connect(region)
            return self._clients[region]

    def query(self, source: MetricSource, now: datetime, *, metric: str = "") -> Measurement:
        now = as_utc(now)

        def read() -> Reading:
            client = self.client_for(source)
            return reading_from(client.get_metric_data(**metric_data_request(source, now)), source)

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
