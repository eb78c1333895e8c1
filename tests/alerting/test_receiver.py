"""The webhook receiver: auth, malformed and replayed payloads, dedup, rollback into a real bare remote."""

from __future__ import annotations

import http.client
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alerting_helpers import AUTH, TOKEN, WorkingTreeApplier, alert, make_receiver, metric_value, notification

from rollout_policies.alerting import RunningReceiver
from rollout_policies.errors import UserError
from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour
from simulator.harness import STACK, GitRemote

NOW = datetime.now(UTC).replace(microsecond=0)
FRESH = {"starts_at": NOW - timedelta(seconds=20)}  # Alertmanager sends firing alerts with a zero endsAt


def weights_on_remote(remote: GitRemote) -> dict[Colour, int]:
    return dict(state_from_text(remote.show(f"Pulumi.{STACK}.yaml"), STACK).weights)


def test_firing_rollback_alert_commits_stable_weights_to_the_remote_and_applies(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    clone = remote.clone(tmp_path / "clone", "serve")
    applier = WorkingTreeApplier(clone)
    receiver = make_receiver(clone, plan, NOW, applier)
    response = receiver.handle("POST", "/alerts", AUTH, notification(alert(**FRESH)))
    body = json.loads(response.body)
    assert (response.status, body["result"], body["triggers"]) == (
        200,
        "rolled-back",
        ["database-connection-loss"],
    )
    assert remote.commits_since_seed() == [body["commit"]]
    assert weights_on_remote(remote) == {Colour.BLUE: 100, Colour.GREEN: 0}
    assert "Why: automatic rollback: Database Connection Loss" in remote.messages()[0]
    assert applier.applied == [(STACK, {Colour.BLUE: 100, Colour.GREEN: 0})]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-token-0123456789"},
        {"authorization": TOKEN},
        {"authorization": f"Basic {TOKEN}"},
    ],
    ids=["missing", "wrong", "no-scheme", "basic"],
)
def test_unauthenticated_calls_are_refused_and_logged_without_the_token(
    remote: GitRemote, plan: Plan, tmp_path: Path, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    with caplog.at_level(logging.INFO, logger="rollout.alerting"):
        response = receiver.handle(
            "POST", "/alerts", headers, notification(alert(**FRESH)), client="10.0.0.9"
        )
    assert response.status == 401
    assert json.loads(response.body)["reason"] == "unauthorized"
    assert remote.commits_since_seed() == []
    assert "webhook refused from 10.0.0.9: missing or wrong bearer token" in caplog.text
    assert TOKEN not in caplog.text
    assert receiver.metrics.rejected.labels("unauthorized")._value.get() == 1


@pytest.mark.parametrize(
    ("body", "status", "reason", "message"),
    [
        (b"{not json", 400, "malformed", "body is not JSON"),
        (b"[]", 400, "malformed", "body is not a JSON object"),
        (b'{"version": "3", "alerts": []}', 422, "unsupported", "payload version '3'"),
        (b'{"version": "4", "groupKey": "g", "status": "firing", "receiver": "r", "alerts": []}', 400,
         "malformed", "alerts: Tuple should have at least 1 item"),
        (b'{"version": "4", "groupKey": "g", "status": "burning", "receiver": "r", "alerts": [{}]}', 400,
         "malformed", "status: Input should be 'firing' or 'resolved'"),
        (b"\xff\xfe", 400, "malformed", "body is not JSON"),
    ],
    ids=["not-json", "not-object", "version-3", "no-alerts", "bad-status", "not-utf8"],
)  # fmt: skip
def test_malformed_or_unsupported_payloads_are_refused_with_a_clear_error(
    remote: GitRemote, plan: Plan, tmp_path: Path, body: bytes, status: int, reason: str, message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    with caplog.at_level(logging.WARNING, logger="rollout.alerting"):
        response = receiver.handle("POST", "/alerts", AUTH, body)
    answer = json.loads(response.body)
    assert (response.status, answer["reason"]) == (status, reason)
    assert message in answer["error"]
    assert message in caplog.text
    assert remote.commits_since_seed() == []


@pytest.mark.parametrize(
    ("changes", "reason", "message"),
    [
        ({"trigger": "moon-phase"}, "unknown_trigger", "rollout_trigger 'moon-phase' is not in the plan"),
        ({"stack": "prod-eu"}, "unknown_stack", "stack 'prod-eu' is not served here"),
        ({"service": "checkout-api"}, "unknown_service", "rollout_service 'checkout-api'"),
    ],
)
def test_rollback_alerts_this_receiver_does_not_own_are_refused(
    remote: GitRemote, plan: Plan, tmp_path: Path, changes: dict[str, str], reason: str, message: str
) -> None:
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    response = receiver.handle("POST", "/alerts", AUTH, notification(alert(**FRESH, **changes)))
    answer = json.loads(response.body)
    assert (response.status, answer["reason"]) == (422, reason)
    assert message in answer["error"]
    assert remote.commits_since_seed() == []


@pytest.mark.parametrize(
    ("starts_at", "ends_at", "message"),
    [
        (NOW - timedelta(hours=3), None, "an old notification (max age 0:30:00)"),
        (NOW - timedelta(minutes=5), NOW - timedelta(minutes=2), "an old notification"),
        (NOW + timedelta(minutes=10), None, "starts in the future"),
    ],
    ids=["started-long-ago", "ended", "future"],
)
def test_replayed_old_notifications_are_refused_and_logged(
    remote: GitRemote, plan: Plan, tmp_path: Path, starts_at: datetime, ends_at: datetime | None,
    message: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    with caplog.at_level(logging.WARNING, logger="rollout.alerting"):
        response = receiver.handle(
            "POST", "/alerts", AUTH, notification(alert(starts_at=starts_at, ends_at=ends_at))
        )
    assert (response.status, json.loads(response.body)["reason"]) == (409, "replay")
    assert message in caplog.text
    assert remote.commits_since_seed() == []


def test_a_repeated_notification_is_a_dedup_hit_and_never_a_second_rollback(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    clone = remote.clone(tmp_path / "clone", "serve")
    applier = WorkingTreeApplier(clone)
    receiver = make_receiver(clone, plan, NOW, applier)
    payload = notification(alert(**FRESH))
    first = receiver.handle("POST", "/alerts", AUTH, payload)
    again = receiver.handle("POST", "/alerts", AUTH, payload)
    assert json.loads(first.body)["result"] == "rolled-back"
    assert (again.status, json.loads(again.body)["result"]) == (200, "duplicate")
    assert len(remote.commits_since_seed()) == 1
    assert len(applier.applied) == 1
    assert receiver.metrics.dedup_hits._value.get() == 1


def test_another_trigger_for_a_rolled_back_stack_makes_no_second_commit(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    receiver.handle("POST", "/alerts", AUTH, notification(alert(**FRESH)))
    second = receiver.handle(
        "POST", "/alerts", AUTH,
        notification(alert("api-error-rate", fingerprint="ffff000011112222", **FRESH), group_key="other"),
    )  # fmt: skip
    assert json.loads(second.body)["result"] == "already-rolled-back"
    assert len(remote.commits_since_seed()) == 1


@pytest.mark.parametrize(
    "payload",
    [
        notification(alert(status="resolved", **FRESH), status="resolved"),
        notification(alert(action="alert", **FRESH)),
    ],
    ids=["resolved", "gate-alert"],
)
def test_resolved_notifications_and_gate_alerts_roll_nothing_back(
    remote: GitRemote, plan: Plan, tmp_path: Path, payload: bytes
) -> None:
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    response = receiver.handle("POST", "/alerts", AUTH, payload)
    assert (response.status, json.loads(response.body)["result"]) == (200, "no-action")
    assert remote.commits_since_seed() == []


def test_a_failed_rollback_answers_500_so_alertmanager_retries_and_the_retry_rolls_back(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    real = receiver.rollback
    calls: list[int] = []

    def fails_once(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise UserError("rollback: main kept moving; gave up after 4 rounds")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    receiver.rollback = fails_once  # type: ignore[assignment]
    payload = notification(alert(**FRESH))
    failed = receiver.handle("POST", "/alerts", AUTH, payload)
    retried = receiver.handle("POST", "/alerts", AUTH, payload)
    assert (failed.status, json.loads(failed.body)["reason"]) == (500, "rollback_failed")
    assert json.loads(retried.body)["result"] == "rolled-back"
    assert len(remote.commits_since_seed()) == 1


def _post(
    port: int, body: bytes, barrier: threading.Barrier, statuses: list[int], lock: threading.Lock
) -> None:
    barrier.wait()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request(
            "POST", "/alerts", body, {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        )
        status = connection.getresponse().status
    finally:
        connection.close()
    with lock:
        statuses.append(status)


def test_a_burst_of_1000_concurrent_duplicates_rolls_back_exactly_once(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    clone = remote.clone(tmp_path / "clone", "serve")
    applier = WorkingTreeApplier(clone)
    receiver = make_receiver(clone, plan, NOW, applier)
    payload = notification(alert(**FRESH))
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(1000)
    with RunningReceiver(receiver) as running:
        threads = [
            threading.Thread(target=_post, args=(running.port, payload, barrier, statuses, lock))
            for _ in range(1000)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        metrics = receiver.handle("GET", "/metrics", {}, b"").body.decode()
    assert statuses == [200] * 1000
    assert len(remote.commits_since_seed()) == 1
    assert len(applier.applied) == 1
    assert metric_value(metrics, 'rollout_rollbacks_total{result="rolled-back"}') == 1
    assert metric_value(metrics, "rollout_webhook_dedup_hits_total") == 999
    assert metric_value(metrics, "rollout_webhook_notifications_received_total") == 1000


def test_health_and_metrics_are_served_in_prometheus_format(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
    receiver.handle("POST", "/alerts", {}, b"{}")
    with RunningReceiver(receiver) as running:
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
        connection.request("GET", "/healthz")
        health = connection.getresponse()
        assert (health.status, json.loads(health.read())) == (200, {"status": "ok"})
        connection.request("GET", "/metrics")
        metrics = connection.getresponse()
        text = metrics.read().decode()
        connection.request("GET", "/admin")
        missing = connection.getresponse()
        missing.read()
        connection.close()
    assert metrics.getheader("Content-Type", "").startswith("text/plain; version=")
    assert metric_value(text, 'rollout_webhook_notifications_rejected_total{reason="unauthorized"}') == 1
    assert metric_value(text, "rollout_webhook_notifications_received_total") == 1
    assert missing.status == 404
