"""The traffic simulator: endpoints, metrics, fault injection per version, the user split, health checks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.bridge import bridge_rules
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


def test_the_load_balancer_marks_a_version_unhealthy_when_its_checks_time_out(green: ServiceVersion) -> None:
    balancer = LoadBalancer({"green": green.url}, {"green": "candidate"}, timeout=0.2, unhealthy_after=2)
    try:
        with httpx.Client() as http:
            balancer.check(http)
            assert balancer.unhealthy.labels("markethub-mobile", "green", "candidate")._value.get() == 0
            green.set_faults(Faults(latency_ms=600))
            balancer.check(http)
            balancer.check(http)
        assert balancer.unhealthy.labels("markethub-mobile", "green", "candidate")._value.get() == 1
        exported = httpx.get(f"http://{balancer.target}/metrics", timeout=5).text
        assert (
            'markethub_lb_unhealthy_hosts{colour="green",service="markethub-mobile",track="candidate"} 1.0'
            in exported
        )
    finally:
        green.set_faults(Faults())
        balancer.stop()


def test_bridge_rules_publish_the_plans_bridged_metrics() -> None:
    rules = bridge_rules()["groups"][0]["rules"]
    assert [(r["record"], r["labels"]["metric"]) for r in rules] == [
        ("markethub_rollout_measurement", "crash_rate"),
        ("markethub_rollout_measurement", "lb_unhealthy_hosts"),
    ]
    assert all(r["labels"]["service"] == "markethub-mobile" for r in rules)
