"""The CloudWatch provider against a moto server (the only stand-in allowed for AWS: no account here)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from devenv.services import free_port
from rollout_policies.core.measurement import Phase
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.base import QueryFailed
from rollout_policies.providers.cloudwatch import CloudWatchProvider, evaluate

pytestmark = pytest.mark.services

NAMESPACE = "markethub/loadbalancer"


def source(metric_name: str, **options) -> MetricSource:
    return MetricSource(
        provider="cloudwatch",
        query=metric_name,
        options={"namespace": NAMESPACE, **options},
        max_age=timedelta(minutes=10),
    )


@pytest.fixture(scope="module")
def cloudwatch(moto_server):
    now = datetime.now(UTC).replace(microsecond=0)
    client = moto_server.client("cloudwatch")
    client.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": "UnhealthyHostCount",
                "Dimensions": [{"Name": "Region", "Value": "us-east-1"}],
                "Timestamp": now - timedelta(seconds=30),
                "Value": 2.0,
            },
            {
                "MetricName": "UnhealthyHostCount",
                "Dimensions": [{"Name": "Region", "Value": "eu-west-1"}],
                "Timestamp": now - timedelta(seconds=30),
                "Value": 0.0,
            },
            {"MetricName": "OldLatency", "Timestamp": now - timedelta(hours=2), "Value": 900.0},
        ],
    )
    return CloudWatchProvider(endpoint_url=moto_server.endpoint_url, **moto_server.credentials_for_provider)


def test_get_metric_data_returns_the_put_value(cloudwatch):
    measurement = cloudwatch.query(
        source("UnhealthyHostCount", dimensions={"Region": "us-east-1"}, stat="Maximum"),
        datetime.now(UTC),
        metric="lb_failures",
    )

    assert (measurement.metric, measurement.phase, measurement.value) == ("lb_failures", Phase.OK, 2.0)


def test_dimensions_select_the_series(cloudwatch):
    measurement = cloudwatch.query(
        source("UnhealthyHostCount", dimensions={"Region": "eu-west-1"}, stat="Maximum"), datetime.now(UTC)
    )

    assert (measurement.phase, measurement.value) == (Phase.OK, 0.0)


def test_metric_with_no_points_is_no_data(cloudwatch):
    measurement = cloudwatch.query(source("MetricNobodyPuts"), datetime.now(UTC))

    assert measurement.phase is Phase.NO_DATA
    assert "no data points" in measurement.message


def test_points_older_than_max_age_are_no_data(cloudwatch):
    measurement = cloudwatch.query(source("OldLatency"), datetime.now(UTC))

    assert measurement.phase is Phase.NO_DATA


def test_missing_namespace_is_an_error(cloudwatch):
    bare = MetricSource(provider="cloudwatch", query="UnhealthyHostCount")

    measurement = cloudwatch.query(bare, datetime.now(UTC))

    assert measurement.phase is Phase.ERROR
    assert "options.namespace" in measurement.message


def test_unreachable_endpoint_is_an_error_not_a_pass():
    provider = CloudWatchProvider(
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        timeout=1.0,
        attempts=2,
    )

    measurement = provider.query(source("UnhealthyHostCount"), datetime.now(UTC))

    assert measurement.phase is Phase.ERROR
    assert "after 2 tries" in measurement.message


def test_is_online_against_moto(cloudwatch):
    assert cloudwatch.is_online() is True


def test_named_metrics_are_combined_by_the_query_expression(moto_server, cloudwatch):
    earlier = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    dimensions = [{"Name": "LoadBalancer", "Value": "app/markethub/candidate"}]
    moto_server.client("cloudwatch").put_metric_data(
        Namespace="markethub/elb",
        MetricData=[
            {"MetricName": "HealthyHostCount", "Dimensions": dimensions, "Timestamp": earlier, "Value": 3.0},
            {
                "MetricName": "UnHealthyHostCount",
                "Dimensions": dimensions,
                "Timestamp": earlier,
                "Value": 1.0,
            },
        ],
    )
    healthy_share = MetricSource(
        provider="cloudwatch",
        query="100 * healthy / (healthy + unhealthy)",
        options={
            "namespace": "markethub/elb",
            "dimensions": {"LoadBalancer": "app/markethub/candidate"},
            "metrics": {"healthy": "HealthyHostCount", "unhealthy": "UnHealthyHostCount"},
        },
    )

    measurement = cloudwatch.query(healthy_share, datetime.now(UTC))

    assert (measurement.phase, measurement.value) == (Phase.OK, 75.0)


def test_expression_naming_an_undefined_metric_is_an_error(cloudwatch):
    bad = MetricSource(
        provider="cloudwatch",
        query="UnhealthyHostCount",
        options={"namespace": NAMESPACE, "metrics": {"unhealthy": "UnhealthyHostCount"}},
    )

    measurement = cloudwatch.query(bad, datetime.now(UTC))

    assert measurement.phase is Phase.ERROR
    assert "options.metrics does not define" in measurement.message


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("100 * healthy / (healthy + unhealthy)", 75.0),
        ("healthy - unhealthy - 1", 1.0),  # left to right
        ("-unhealthy + healthy", 2.0),
        ("2 * (3 + 4) * .5", 7.0),
        ("1e2 / healthy", 100 / 3),
        ("healthy / (unhealthy - 1)", math.nan),  # division by zero: no data, not a crash
    ],
)
def test_query_arithmetic_over_the_named_metrics(expression: str, expected: float) -> None:
    value = evaluate(expression, {"healthy": 3.0, "unhealthy": 1.0})
    assert value == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("healthy +", "ends too early"),
        ("(healthy", "unclosed parenthesis"),
        ("healthy ** 2", "not arithmetic over options.metrics ids"),
        ("__import__('os')", "is not an arithmetic expression"),
        ("missing * 2", "names 'missing', which options.metrics does not define"),
        ("", "is not an arithmetic expression"),
        ("(" * 40 + "1" + ")" * 40, "more than 32 deep"),
    ],
)
def test_a_query_that_is_not_arithmetic_is_one_clear_error(expression: str, error: str) -> None:
    with pytest.raises(QueryFailed, match=re.escape(error)):
        evaluate(expression, {"healthy": 3.0})


def test_a_metric_names_its_own_region(moto_server):
    """Route 53 publishes health-check metrics in us-east-1 only: a controller in us-west-2 reads
    them there when the metric says ``options.region``, and finds nothing in its own region."""
    now = datetime.now(UTC).replace(microsecond=0)
    moto_server.client("cloudwatch", region_name="us-east-1").put_metric_data(
        Namespace="AWS/Route53",
        MetricData=[
            {
                "MetricName": "HealthCheckPercentageHealthy",
                "Dimensions": [{"Name": "HealthCheckId", "Value": "region-test"}],
                "Timestamp": now - timedelta(seconds=30),
                "Value": 97.0,
            }
        ],
    )
    keys = {**moto_server.credentials_for_provider, "region": "us-west-2"}
    provider = CloudWatchProvider(endpoint_url=moto_server.endpoint_url, **keys)
    health = {"namespace": "AWS/Route53", "dimensions": {"HealthCheckId": "region-test"}, "stat": "Minimum"}

    there = provider.query(source("HealthCheckPercentageHealthy", **health, region="us-east-1"), now)
    here = provider.query(source("HealthCheckPercentageHealthy", **health), now)

    assert (there.phase, there.value) == (Phase.OK, 97.0)
    assert here.phase is Phase.NO_DATA
