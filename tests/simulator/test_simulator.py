"""The traffic simulator: endpoints, metrics, fault injection per version, the user split, health checks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.services import MotoServer
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.providers.cloudwatch import CloudWatchProvider
from rollout_policies.providers.json_http import JsonHttpProvider
from simulator.crash_reporter import CrashReporter
from simulator.service import Faults, ServiceVersion
from simulator.traffic import FixedSplit, LoadBalancer, Users


@pytest.fixture
def green() -> Iterator[ServiceVersion]:
    version = ServiceVersion("green", "candidate", seed=3).start()
    yield version
    version.stop()


def samples(version: ServiceVersion) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{version.url}/metrics", timeout=5).text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(version: ServiceVersion, name: str, **labels: str) -> float:
    base = {"service": "markethub-mobile", "colour": version.colour, "track": version.track}
    return samples(version)[(name, tuple(sorted({**base, **labels}.items())))]


def test_endpoints_answer_and_count_requests_by_status(green: ServiceVersion) -> None:
    with httpx.Client(base_url=green.url, timeout=5) as http:
        assert http.get("/browse").status_code == 200
        assert http.get("/search").status_code == 200
        assert http.post("/cart").status_code == 200
        assert http.post("/checkout").status_code == 200
        assert http.get("/checkout").status_code == 404
    assert value(green, "http_server_requests_total", endpoint="/checkout", code="200") == 1
    assert value(green, "markethub_sessions_total") == 1
    assert value(green, "http_server_request_duration_seconds_count", endpoint="/search") == 1
    assert value(green, "markethub_db_connection_up") == 1


def test_database_loss_drops_the_gauge_and_fails_database_endpoints_only(green: ServiceVersion) -> None:
    answer = httpx.post(f"{green.url}/admin/faults", json={"db_down": True}, timeout=5)
    assert answer.json()["db_down"] is True
    assert httpx.get(f"{green.url}/browse", timeout=5).status_code == 200
    assert httpx.post(f"{green.url}/cart", timeout=5).status_code == 503
    assert value(green, "markethub_db_connection_up") == 0
    assert value(green, "markethub_db_connection_errors_total") == 1
    assert value(green, "http_server_requests_total", endpoint="/cart", code="503") == 1


def test_a_crashing_session_gets_no_answer_and_counts_a_crash(green: ServiceVersion) -> None:
    httpx.post(f"{green.url}/admin/faults", json={"crash_rate": 1.0}, timeout=5)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{green.url}/browse", timeout=5)
    assert value(green, "markethub_crashes_total") == 1
    assert value(green, "markethub_sessions_total") == 1


def test_error_rate_one_answers_every_request_500(green: ServiceVersion) -> None:
    httpx.post(f"{green.url}/admin/faults", json={"error_rate": 1.0}, timeout=5)
    codes = {httpx.get(f"{green.url}/search", timeout=5).status_code for _ in range(5)}
    assert codes == {500}
    assert value(green, "http_server_requests_total", endpoint="/search", code="500") == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error_rate": 2}, "error_rate must be a number from 0 to 1"),
        ({"crash_rate": "lots"}, "crash_rate must be a number from 0 to 1"),
        ({"latency_ms": -1}, "latency_ms must be from 0 to 60000"),
        ({"db_down": "yes"}, "db_down must be true or false"),
        ({"disk_full": True}, "unknown fault(s): disk_full"),
    ],
)
def test_bad_faults_are_refused_and_leave_the_faults_unchanged(
    green: ServiceVersion, body: dict[str, object], message: str
) -> None:
    answer = httpx.post(f"{green.url}/admin/faults", json=body, timeout=5)
    assert (answer.status_code, answer.json()["error"]) == (400, message)
    assert json.loads(httpx.get(f"{green.url}/admin/faults", timeout=5).text) == {
        "error_rate": 0.0, "latency_ms": 0.0, "crash_rate": 0.0, "db_down": False,
    }  # fmt: skip


def test_users_follow_the_weights() -> None:
    blue = ServiceVersion("blue", "stable").start()
    green = ServiceVersion("green", "candidate").start()
    users = Users(
        {"blue": blue.url, "green": green.url}, FixedSplit(100, 0), sessions_per_second=200, workers=2
    )
    try:
        users.start(sessions_per_worker=10)
        for thread in users.threads:
            thread.join(timeout=30)
        assert value(blue, "markethub_sessions_total") == 20
        assert value(green, "markethub_sessions_total") == 0
    finally:
        users.stop()
        blue.stop()
        green.stop()


def test_the_load_balancer_publishes_unhealthy_hosts_to_cloudwatch_when_checks_time_out(
    green: ServiceVersion, moto_server: MotoServer
) -> None:
    """moto stands in for CloudWatch (AWS cannot be reached here); the plan's CloudWatch source reads it."""
    moto_server.reset()
    cloudwatch = moto_server.client("cloudwatch")
    balancer = LoadBalancer(
        {"green": green.url}, {"green": "candidate"}, timeout=0.2, unhealthy_after=2, cloudwatch=cloudwatch
    )
    source = load_plan(DEFAULT_PLAN).metric("lb_unhealthy_hosts").source
    provider = CloudWatchProvider(
        endpoint_url=moto_server.endpoint_url, **moto_server.credentials_for_provider
    )
    try:
        with httpx.Client() as http:
            balancer.check(http)
            assert balancer.unhealthy == {"green": 0}
            time.sleep(1.1)  # moto answers for whole seconds: a point from this second is not in yet
            assert provider.query(source, datetime.now(UTC)).value == 0
            green.set_faults(Faults(latency_ms=600))
            balancer.check(http)
            balancer.check(http)
        assert balancer.unhealthy == {"green": 1}
        time.sleep(1.1)
        measured = provider.query(source, datetime.now(UTC))
        assert (measured.phase.value, measured.value) == ("ok", 1.0)  # the minute's Maximum
        assert balancer.publish_errors == 0
    finally:
        green.set_faults(Faults())
        balancer.stop()


def test_the_crash_reporter_answers_the_plans_stability_query() -> None:
    reporter = CrashReporter().start()
    try:
        source = load_plan(DEFAULT_PLAN).metric("crash_rate").source
        provider = JsonHttpProvider(base_urls={"crash_reporter": reporter.url})
        assert provider.query(source, datetime.now(UTC)).phase.value == "no_data"  # no session yet
        for crashed in (True, False, False, False):
            reporter.report("candidate", crashed)
        reporter.report("stable", True)
        measured = provider.query(source, datetime.now(UTC))
        assert (measured.phase.value, measured.value) == ("ok", 25.0)
        assert httpx.get(f"{reporter.url}/api/v1/stability", timeout=5).status_code == 400
    finally:
        reporter.stop()


def test_a_version_reports_its_sessions_and_crashes_to_the_crash_reporter() -> None:
    reporter = CrashReporter().start()
    version = ServiceVersion("green", "candidate", seed=5, crash_reporter=reporter).start()
    try:
        version.set_faults(Faults(crash_rate=1.0))
        with httpx.Client(base_url=version.url, timeout=5) as http:
            for _ in range(3):
                with pytest.raises(httpx.HTTPError):
                    http.get("/browse")
        assert reporter.stability("candidate", 60)["crashes"] == 3
    finally:
        version.stop()
        reporter.stop()
