"""The Prometheus provider against Debian's Prometheus scraping a local exporter with known values."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from devenv.services import free_port
from rollout_policies.core.measurement import Measurement, Phase
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.prometheus import PrometheusProvider

pytestmark = pytest.mark.services


def promql(query: str) -> MetricSource:
    return MetricSource(provider="prometheus", query=query)


def wait_for_measurement(
    provider: PrometheusProvider, query: str, accept: Callable[[Measurement], bool], timeout: float = 20.0
) -> Measurement:
    """Poll until Prometheus has scraped what the test expects (a readiness wait, not an assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        measurement = provider.query(promql(query), datetime.now(UTC))
        if accept(measurement) or time.monotonic() > deadline:
            return measurement
        time.sleep(0.2)


@pytest.fixture(scope="module")
def doomed_exporter(exporter_factory):
    """An exporter one test stops, scraped by the same Prometheus as the others."""
    exporter = exporter_factory()
    exporter.set("markethub_db_connections", 12)
    return exporter


@pytest.fixture(scope="module")
def scraped(exporter_factory, prometheus_factory, doomed_exporter):
    exporter = exporter_factory()
    exporter.set("markethub_crash_rate_percent", 0.4)
    exporter.set("markethub_api_error_rate_percent", 1.5, region="us-east-1")
    exporter.set("markethub_api_error_rate_percent", 2.5, region="eu-west-1")
    exporter.set("markethub_nps_score", float("nan"))
    prometheus = prometheus_factory(scrape_targets=[exporter.target, doomed_exporter.target])
    provider = PrometheusProvider(url=prometheus.url)
    wait_for_measurement(provider, "markethub_crash_rate_percent", lambda m: m.phase is Phase.OK)
    return provider


def test_query_returns_the_exported_value(scraped):
    source = promql("markethub_crash_rate_percent")

    measurement = scraped.query(source, datetime.now(UTC), metric="crash_rate")

    assert (measurement.metric, measurement.phase, measurement.value) == ("crash_rate", Phase.OK, 0.4)


def test_aggregated_query_returns_the_sum_of_series(scraped):
    measurement = scraped.query(promql("sum(markethub_api_error_rate_percent)"), datetime.now(UTC))

    assert (measurement.phase, measurement.value) == (Phase.OK, 4.0)


def test_observed_at_is_the_sample_timestamp_at_now(scraped):
    now = datetime.now(UTC).replace(microsecond=0)

    measurement = scraped.query(promql("markethub_crash_rate_percent"), now)

    assert measurement.observed_at == now


def test_empty_vector_is_no_data(scraped):
    measurement = scraped.query(promql("markethub_metric_nobody_exports"), datetime.now(UTC))

    assert measurement.phase is Phase.NO_DATA
    assert "empty vector" in measurement.message


def test_nan_sample_is_no_data(scraped):
    measurement = scraped.query(promql("markethub_nps_score"), datetime.now(UTC))

    assert measurement.phase is Phase.NO_DATA
    assert measurement.value is None


def test_several_series_are_an_error_asking_for_aggregation(scraped):
    measurement = scraped.query(promql("markethub_api_error_rate_percent"), datetime.now(UTC))

    assert measurement.phase is Phase.ERROR
    assert "2 series" in measurement.message


def test_bad_promql_is_an_error_with_prometheus_message(scraped):
    measurement = scraped.query(promql("sum(markethub_crash_rate_percent"), datetime.now(UTC))

    assert measurement.phase is Phase.ERROR
    assert "bad_data" in measurement.message
    assert "parse error" in measurement.message


def test_query_before_any_scrape_is_no_data(scraped):
    measurement = scraped.query(promql("markethub_crash_rate_percent"), datetime.now(UTC) - timedelta(days=1))

    assert measurement.phase is Phase.NO_DATA


def test_server_down_is_an_error_not_a_pass():
    provider = PrometheusProvider(url=f"http://127.0.0.1:{free_port()}", attempts=2)

    measurement = provider.query(promql("up"), datetime.now(UTC))

    assert measurement.phase is Phase.ERROR
    assert "cannot reach" in measurement.message
    assert "after 2 tries" in measurement.message


def test_is_online_reports_a_running_server(scraped):
    assert scraped.is_online() is True


def test_is_online_reports_a_missing_server():
    assert PrometheusProvider(url=f"http://127.0.0.1:{free_port()}").is_online() is False


def test_target_that_stops_answering_becomes_no_data(scraped, doomed_exporter):
    before = wait_for_measurement(scraped, "markethub_db_connections", lambda m: m.phase is Phase.OK)

    doomed_exporter.stop()
    after = wait_for_measurement(scraped, "markethub_db_connections", lambda m: m.phase is Phase.NO_DATA)

    assert (before.phase, before.value) == (Phase.OK, 12.0)
    assert after.phase is Phase.NO_DATA
