"""The JSON-over-HTTP provider against a local HTTP server.

The server is a stand-in for a mobile crash reporter's API (crash-free rate) and a survey tool's
API (NPS): those are hosted products with no local build, so a small http.server answers with
the same shapes of JSON on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devenv.services import free_port
from rollout_policies.core.measurement import Phase
from rollout_policies.plan.model import MetricSource
from rollout_policies.providers.json_http import JsonHttpProvider

NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = "crash-reporter-test-token"

ROUTES = {
    "/v1/apps/markethub/crash-free": {
        "data": {"crash_free_rate": 99.72, "updated_at": (NOW - timedelta(minutes=2)).isoformat()}
    },
    "/v1/apps/markethub/crash-free-old": {
        "data": {"crash_free_rate": 99.9, "updated_at": (NOW - timedelta(hours=3)).isoformat()}
    },
    "/api/surveys/nps": {"results": [{"nps": 41, "responses": 812, "as_of": int(NOW.timestamp() * 1000)}]},
    "/api/surveys/empty": {"results": [{"nps": None, "responses": 0}]},
    "/api/surveys/text": {"results": [{"nps": "forty"}]},
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/v1/private/crash-free":
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, b'{"error": "unauthorized"}')
            else:
                self._send(200, json.dumps({"crash_free_rate": 98.5}).encode())
        elif self.path == "/broken":
            self._send(500, b"internal error")
        elif self.path == "/html":
            self._send(200, b"<html>maintenance</html>", "text/html")
        elif self.path in ROUTES:
            self._send(200, json.dumps(ROUTES[self.path]).encode())
        else:
            self._send(404, b'{"error": "not found"}')

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def api_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def provider(api_url):
    return JsonHttpProvider(
        base_urls={"crash_reporter": f"{api_url}/v1", "surveys": f"{api_url}/api"}, attempts=2
    )


def crash_free(path: str = "/apps/markethub/crash-free", **options) -> MetricSource:
    return MetricSource(
        provider="json_http",
        query=path,
        options={"base": "crash_reporter", "field": "data.crash_free_rate", **options},
    )


def test_crash_free_rate_with_its_timestamp(provider):
    measurement = provider.query(
        crash_free(observed_at_field="data.updated_at"), NOW, metric="crash_free_sessions"
    )

    assert (measurement.metric, measurement.phase, measurement.value) == (
        "crash_free_sessions",
        Phase.OK,
        99.72,
    )
    assert measurement.observed_at == NOW - timedelta(minutes=2)


def test_without_a_timestamp_field_the_value_is_observed_now(provider):
    measurement = provider.query(crash_free(), NOW)

    assert (measurement.value, measurement.observed_at) == (99.72, NOW)


def test_nps_by_list_index_and_epoch_milliseconds(provider):
    source = MetricSource(
        provider="json_http",
        query="/surveys/nps",
        options={"base": "surveys", "field": "results.0.nps", "observed_at_field": "results.0.as_of"},
    )

    measurement = provider.query(source, NOW)

    assert (measurement.phase, measurement.value, measurement.observed_at) == (Phase.OK, 41.0, NOW)


def test_absolute_url_needs_no_base(api_url):
    source = MetricSource(
        provider="json_http", query=f"{api_url}/api/surveys/nps", options={"field": "results.0.nps"}
    )

    measurement = JsonHttpProvider().query(source, NOW)

    assert (measurement.phase, measurement.value) == (Phase.OK, 41.0)


def test_null_value_is_no_data(provider):
    source = MetricSource(
        provider="json_http", query="/surveys/empty", options={"base": "surveys", "field": "results.0.nps"}
    )

    assert provider.query(source, NOW).phase is Phase.NO_DATA


def test_old_timestamp_is_no_data(provider):
    source = crash_free("/apps/markethub/crash-free-old", observed_at_field="data.updated_at")

    measurement = provider.query(source, NOW)

    assert measurement.phase is Phase.NO_DATA
    assert "stale" in measurement.message


def test_missing_field_is_an_error_naming_it(provider):
    measurement = provider.query(crash_free(field="data.crash_free_users"), NOW)

    assert measurement.phase is Phase.ERROR
    assert "data.crash_free_users" in measurement.message


def test_text_value_is_an_error(provider):
    source = MetricSource(
        provider="json_http", query="/surveys/text", options={"base": "surveys", "field": "results.0.nps"}
    )

    measurement = provider.query(source, NOW)

    assert measurement.phase is Phase.ERROR
    assert "not a number" in measurement.message


def test_http_500_is_an_error_after_retries(api_url):
    source = MetricSource(provider="json_http", query=f"{api_url}/broken", options={"field": "x"})

    measurement = JsonHttpProvider(attempts=2).query(source, NOW)

    assert measurement.phase is Phase.ERROR
    assert "HTTP 500" in measurement.message
    assert "after 2 tries" in measurement.message


def test_html_answer_is_an_error(api_url):
    source = MetricSource(provider="json_http", query=f"{api_url}/html", options={"field": "x"})

    measurement = JsonHttpProvider().query(source, NOW)

    assert measurement.phase is Phase.ERROR
    assert "did not answer JSON" in measurement.message


def test_bearer_token_is_read_from_the_named_variable(provider, monkeypatch):
    monkeypatch.setenv("CRASH_REPORTER_TOKEN", TOKEN)

    measurement = provider.query(
        crash_free("/private/crash-free", field="crash_free_rate", token_env="CRASH_REPORTER_TOKEN"), NOW
    )

    assert (measurement.phase, measurement.value) == (Phase.OK, 98.5)


def test_unset_token_variable_is_an_error_naming_it(provider, monkeypatch):
    monkeypatch.delenv("CRASH_REPORTER_TOKEN", raising=False)

    measurement = provider.query(
        crash_free("/private/crash-free", field="crash_free_rate", token_env="CRASH_REPORTER_TOKEN"), NOW
    )

    assert measurement.phase is Phase.ERROR
    assert "CRASH_REPORTER_TOKEN" in measurement.message


def test_unknown_base_name_is_an_error(provider):
    measurement = provider.query(crash_free(base="analytics"), NOW)

    assert measurement.phase is Phase.ERROR
    assert "no base URL named 'analytics'" in measurement.message


def test_unreachable_api_is_an_error_not_a_pass():
    source = MetricSource(
        provider="json_http", query=f"http://127.0.0.1:{free_port()}/x", options={"field": "x"}
    )

    measurement = JsonHttpProvider(attempts=2).query(source, NOW)

    assert measurement.phase is Phase.ERROR
    assert "cannot reach" in measurement.message


def test_is_online_when_every_base_answers(provider):
    assert provider.is_online() is True


def test_is_offline_when_a_base_is_unreachable(api_url):
    provider = JsonHttpProvider(
        base_urls={"surveys": f"{api_url}/api", "gone": f"http://127.0.0.1:{free_port()}"}
    )

    assert provider.is_online() is False


def test_query_as_field_with_path_and_url_from_a_variable(api_url, monkeypatch):
    monkeypatch.setenv("SURVEY_API_URL", f"{api_url}/api")
    source = MetricSource(
        provider="json_http",
        query="results.0.nps",
        options={"url_env": "SURVEY_API_URL", "path": "/surveys/nps"},
    )

    measurement = JsonHttpProvider().query(source, NOW)

    assert (measurement.phase, measurement.value) == (Phase.OK, 41.0)


def test_unset_url_variable_is_an_error_naming_it(monkeypatch):
    monkeypatch.delenv("SURVEY_API_URL", raising=False)
    source = MetricSource(
        provider="json_http", query="nps", options={"url_env": "SURVEY_API_URL", "path": "/x"}
    )

    measurement = JsonHttpProvider().query(source, NOW)

    assert measurement.phase is Phase.ERROR
    assert "SURVEY_API_URL" in measurement.message
