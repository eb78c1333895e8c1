"""The provider registry and the settings that configure it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rollout_policies.core.measurement import Phase
from rollout_policies.errors import UserError
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers import (
    COMPARISON_PROVIDERS,
    PROVIDERS,
    ComparisonProvider,
    MetricProvider,
    ProviderSettings,
    comparison_provider_for,
    provider_for,
)
from rollout_policies.providers.json_http import JsonHttpProvider
from rollout_policies.providers.manual import ManualProvider

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_registry_holds_every_backend():
    assert sorted(PROVIDERS) == ["cloudwatch", "json_http", "manual", "metrics_file", "prometheus", "sql"]


def test_unknown_name_is_rejected_naming_the_known_ones():
    with pytest.raises(UserError) as raised:
        provider_for("datadog")

    assert str(raised.value) == (
        "unknown metric provider 'datadog' "
        "(known: cloudwatch, json_http, manual, metrics_file, prometheus, sql)"
    )


def test_unknown_setting_is_rejected():
    with pytest.raises(UserError, match="metric provider 'manual': bad settings"):
        provider_for("manual", url="http://127.0.0.1:9090")


def test_prometheus_without_url_names_the_variable():
    with pytest.raises(UserError, match="ROLLOUT_PROMETHEUS_URL"):
        provider_for("prometheus")


def test_sql_without_dsn_reports_an_error_naming_the_variable():
    provider = provider_for("sql", dsn=None)

    measurement = provider.query(MetricSource(provider="sql", query="SELECT 1"), NOW)

    assert (measurement.phase, measurement.message) == (
        Phase.ERROR,
        "sql: no database DSN: set ROLLOUT_SQL_DSN",
    )


def test_registry_builds_the_named_backend():
    provider = provider_for("json_http", base_urls={"surveys": "http://127.0.0.1:1/api"})

    assert isinstance(provider, JsonHttpProvider)
    assert provider.base_urls == {"surveys": "http://127.0.0.1:1/api"}


def test_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        PROVIDERS["datadog"] = ManualProvider  # type: ignore[index]


def test_settings_from_environment():
    settings = ProviderSettings.from_env(
        {
            "ROLLOUT_PROMETHEUS_URL": "http://127.0.0.1:9090",
            "ROLLOUT_CLOUDWATCH_ENDPOINT_URL": "http://127.0.0.1:5000",
            "AWS_REGION": "eu-west-1",
            "ROLLOUT_SQL_DSN": "postgresql://reader@127.0.0.1/analytics",
            "ROLLOUT_JSON_BASE_URLS": "crash_reporter=http://127.0.0.1:8001/v1, surveys=http://127.0.0.1:8002",
            "ROLLOUT_PROVIDER_TIMEOUT": "2.5",
            "ROLLOUT_PROVIDER_ATTEMPTS": "4",
        }
    )

    assert settings == ProviderSettings(
        prometheus_url="http://127.0.0.1:9090",
        cloudwatch_endpoint_url="http://127.0.0.1:5000",
        cloudwatch_region="eu-west-1",
        sql_dsn="postgresql://reader@127.0.0.1/analytics",
        json_base_urls={"crash_reporter": "http://127.0.0.1:8001/v1", "surveys": "http://127.0.0.1:8002"},
        timeout=2.5,
        attempts=4,
    )


def test_settings_region_prefers_the_rollout_variable():
    settings = ProviderSettings.from_env(
        {"ROLLOUT_CLOUDWATCH_REGION": "us-west-2", "AWS_REGION": "eu-west-1"}
    )

    assert settings.for_provider("cloudwatch")["region"] == "us-west-2"


def test_malformed_base_urls_name_the_variable():
    with pytest.raises(UserError, match="ROLLOUT_JSON_BASE_URLS: 'surveys' is not name=url"):
        ProviderSettings.from_env({"ROLLOUT_JSON_BASE_URLS": "surveys"})


def test_non_numeric_timeout_names_the_variable():
    with pytest.raises(UserError, match="ROLLOUT_PROVIDER_TIMEOUT: not a number: 'soon'"):
        ProviderSettings.from_env({"ROLLOUT_PROVIDER_TIMEOUT": "soon"})


@pytest.mark.parametrize("name", ["prometheus", "cloudwatch", "sql", "json_http", "manual", "metrics_file"])
def test_settings_give_each_backend_only_settings_it_takes(name):
    settings = ProviderSettings(
        prometheus_url="http://127.0.0.1:1",
        cloudwatch_endpoint_url="http://127.0.0.1:1",
        sql_dsn="postgresql://postgres@127.0.0.1:1/postgres",
        metrics_file="/nowhere/metrics.yaml",
    )

    provider = provider_for(name, **settings.for_provider(name))

    assert provider.name == name


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_every_registered_backend_is_a_metric_provider_under_its_own_name(name):
    settings = ProviderSettings(
        prometheus_url="http://127.0.0.1:1",
        sql_dsn="postgresql://postgres@127.0.0.1:1/postgres",
        metrics_file="/nowhere/metrics.yaml",
    )

    provider = provider_for(name, **settings.for_provider(name))

    assert isinstance(provider, MetricProvider)
    assert provider.name == name


@pytest.mark.parametrize("name", sorted(COMPARISON_PROVIDERS))
def test_every_comparison_backend_answers_comparisons(name):
    settings = ProviderSettings(prometheus_url="http://127.0.0.1:1", metrics_file="/nowhere/metrics.yaml")

    provider = comparison_provider_for(name, **settings.for_provider(name))

    assert isinstance(provider, ComparisonProvider)
    assert provider.name == name


def test_comparison_registry_holds_the_backends_that_compare():
    assert sorted(COMPARISON_PROVIDERS) == ["metrics_file", "prometheus"]


def test_a_backend_that_cannot_compare_is_rejected_by_the_comparison_registry():
    with pytest.raises(UserError) as raised:
        comparison_provider_for("sql")

    assert str(raised.value) == "unknown comparison provider 'sql' (known: metrics_file, prometheus)"


def test_the_metrics_file_comes_from_its_variable():
    settings = ProviderSettings.from_env({"ROLLOUT_METRICS_FILE": "/srv/rollout/metrics.yaml"})

    assert settings.for_provider("metrics_file") == {"path": "/srv/rollout/metrics.yaml"}


def test_the_metrics_file_provider_without_a_file_names_the_variable():
    with pytest.raises(UserError, match="ROLLOUT_METRICS_FILE"):
        provider_for("metrics_file")
