"""Each provider through its one-method seam with a fake client: ok, no values, errors, retries.

The fakes stand in for the client libraries only to reach cases a real server will not produce on
demand (a transient failure that then recovers, an unexpected exception); the other test files use
the real servers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollout_policies.core.measurement import Phase
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers import MetricProvider, QueryFailed, TransientQueryFailure
from rollout_policies.providers.cloudwatch import CloudWatchProvider
from rollout_policies.providers.json_http import JsonHttpProvider
from rollout_policies.providers.manual import ManualProvider
from rollout_policies.providers.prometheus import PrometheusProvider
from rollout_policies.providers.sql import SqlProvider

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class Scripted:
    """Answers (or raises) from a script, one item per call, and counts the calls."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = 0

    def next(self):
        self.calls += 1
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, BaseException):
            raise item
        return item

    def instant_query(self, promql, at):
        return self.next()

    def get_metric_data(self, **request):
        return self.next()

    def fetch(self, query, params):
        return self.next()

    def get_json(self, url, headers):
        return self.next()


def vector(*values):
    return {"resultType": "vector", "result": [{"metric": {}, "value": [NOW.timestamp(), v]} for v in values]}


def prometheus(client):
    return PrometheusProvider(client=client), MetricSource(provider="prometheus", query="up")


def cloudwatch(client):
    source = MetricSource(provider="cloudwatch", query="Errors", options={"namespace": "markethub"})
    return CloudWatchProvider(client=client), source


def sql(client):
    return SqlProvider(runner=client), MetricSource(provider="sql", query="SELECT 1, now()")


def json_http(client):
    source = MetricSource(provider="json_http", query="http://reporter.invalid/x", options={"field": "rate"})
    return JsonHttpProvider(getter=client), source


def cloudwatch_answer(*values):
    return {
        "MetricDataResults": [
            {"Id": "gate", "Timestamps": [NOW - timedelta(minutes=1)] * len(values), "Values": list(values)}
        ]
    }


# provider builder, an answer with the value 7, an answer with no values
CASES = {
    "prometheus": (prometheus, vector("7"), vector()),
    "cloudwatch": (cloudwatch, cloudwatch_answer(7.0), cloudwatch_answer()),
    "sql": (sql, [(7, NOW)], []),
    "json_http": (json_http, {"rate": 7}, {"rate": None}),
}


@pytest.mark.parametrize("name", CASES)
def test_answer_with_a_value_is_ok(name):
    build, answer, _ = CASES[name]
    provider, source = build(Scripted(answer))

    measurement = provider.query(source, NOW, metric="m")

    assert (measurement.metric, measurement.phase, measurement.value) == ("m", Phase.OK, 7.0)


@pytest.mark.parametrize("name", CASES)
def test_answer_without_values_is_no_data(name):
    build, _, empty = CASES[name]
    provider, source = build(Scripted(empty))

    measurement = provider.query(source, NOW, metric="m")

    assert (measurement.phase, measurement.value) == (Phase.NO_DATA, None)


@pytest.mark.parametrize("name", CASES)
def test_backend_error_is_an_error_measurement_tried_once(name):
    build, _, _ = CASES[name]
    client = Scripted(QueryFailed("bad query"))
    provider, source = build(client)

    measurement = provider.query(source, NOW, metric="m")

    assert (measurement.phase, measurement.message, client.calls) == (Phase.ERROR, f"{name}: bad query", 1)


@pytest.mark.parametrize("name", CASES)
def test_transient_failure_is_retried_then_answers(name):
    build, answer, _ = CASES[name]
    client = Scripted(TransientQueryFailure("connection refused"), answer)
    provider, source = build(client)

    measurement = provider.query(source, NOW, metric="m")

    assert (measurement.phase, measurement.value, client.calls) == (Phase.OK, 7.0, 2)


@pytest.mark.parametrize("name", CASES)
def test_persistent_transient_failure_is_an_error_after_bounded_tries(name):
    build, _, _ = CASES[name]
    client = Scripted(TransientQueryFailure("connection refused"))
    provider, source = build(client)

    measurement = provider.query(source, NOW, metric="m")

    assert (measurement.phase, client.calls) == (Phase.ERROR, 3)
    assert "after 3 tries" in measurement.message


@pytest.mark.parametrize("name", CASES)
def test_unexpected_exception_is_an_error_not_raised(name):
    build, _, _ = CASES[name]
    provider, source = build(Scripted(RuntimeError("library bug")))

    measurement = provider.query(source, NOW, metric="m")

    assert measurement.phase is Phase.ERROR
    assert "RuntimeError: library bug" in measurement.message


@pytest.mark.parametrize("name", CASES)
def test_providers_satisfy_the_protocol(name):
    build, answer, _ = CASES[name]
    provider, _ = build(Scripted(answer))

    assert isinstance(provider, MetricProvider)


def test_prometheus_nan_is_no_data():
    provider, source = prometheus(Scripted(vector("NaN")))

    assert provider.query(source, NOW).phase is Phase.NO_DATA


def test_prometheus_scalar_result_is_read():
    provider, source = prometheus(Scripted({"resultType": "scalar", "result": [NOW.timestamp(), "3.5"]}))

    assert provider.query(source, NOW).value == 3.5


def test_prometheus_sample_older_than_max_age_is_no_data():
    old = {
        "resultType": "vector",
        "result": [{"metric": {}, "value": [(NOW - timedelta(hours=1)).timestamp(), "1"]}],
    }
    provider, source = prometheus(Scripted(old))

    measurement = provider.query(source, NOW)

    assert measurement.phase is Phase.NO_DATA
    assert "stale" in measurement.message


def test_sql_naive_timestamp_is_taken_as_utc():
    provider, source = sql(Scripted([(2, NOW.replace(tzinfo=None))]))

    assert provider.query(source, NOW).observed_at == NOW


def test_cloudwatch_newest_point_wins():
    answer = {
        "MetricDataResults": [
            {
                "Id": "gate",
                "Timestamps": [NOW - timedelta(minutes=5), NOW - timedelta(minutes=1)],
                "Values": [9.0, 4.0],
            }
        ]
    }
    provider, source = cloudwatch(Scripted(answer))

    assert provider.query(source, NOW).value == 4.0


def test_manual_metric_without_a_signoff_is_no_data():
    source = MetricSource(provider="manual", query="beta_feedback_positive")

    measurement = ManualProvider().query(source, NOW, metric="feedback")

    assert measurement.phase is Phase.NO_DATA
    assert "awaiting a sign-off for 'beta_feedback_positive'" in measurement.message


def test_manual_metric_reads_the_signed_off_value():
    source = MetricSource(provider="manual", query="beta_feedback_positive")
    provider = ManualProvider(signoffs={"beta_feedback_positive": (78, NOW - timedelta(minutes=1))})

    measurement = provider.query(source, NOW)

    assert (measurement.phase, measurement.value, measurement.observed_at) == (
        Phase.OK,
        78.0,
        NOW - timedelta(minutes=1),
    )


def test_manual_signoff_key_defaults_to_the_metric_id():
    provider = ManualProvider(signoffs={"support_volume_ok": 1})

    measurement = provider.query(MetricSource(provider="manual"), NOW, metric="support_volume_ok")

    assert (measurement.phase, measurement.value, measurement.observed_at) == (Phase.OK, 1.0, NOW)
