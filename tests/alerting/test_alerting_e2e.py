"""End to end through the real alerting path: the simulator as the service -> Prometheus (Debian) with the
plan's trigger rules -> Alertmanager (Debian) -> ``rollout serve`` (its own process) -> rollback commit on
a bare remote. Each trigger reads what production wiring gives it: crash rate from the crash reporter's
API and load-balancer failures from CloudWatch (moto's server: AWS cannot be reached here), both
collected by ``rollout serve`` and exported at its /metrics; API errors and database loss from the
service's own series.

Trigger windows are compressed 60x (crash 5s, API errors 2s, load balancer 1s, database immediately):
the real windows take minutes, and are measured by ``bench/rollback_triggers.py``. The HTTPRoute
on an API server is not checked here: serve runs with ``--no-apply`` (no Pulumi stack in this lane).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour
from simulator.harness import FAULTS, STACK, AlertingLane, compressed, compressed_budget

pytestmark = pytest.mark.services


@pytest.mark.parametrize("trigger", list(FAULTS))
def test_each_fault_in_green_lands_one_rollback_commit_through_alertmanager(
    plan: Plan, tmp_path: Path, trigger: str
) -> None:
    fast = compressed(plan, 60)
    text = next(t.text for t in plan.triggers if t.id == trigger)
    with AlertingLane(
        tmp_path, fast, seed=11, detection_budget=compressed_budget(60), missing_data_for="30s"
    ) as lane:
        lane.wait_for_traffic()
        time.sleep(2)
        assert lane.remote.commits_since_seed() == []
        lane.simulation.inject("green", **FAULTS[trigger])
        commit = lane.wait_for_rollback(timeout=90)
        assert commit is not None, (
            f"no rollback; firing: {lane.firing()}; log: {lane.serve.log_path.read_text()}"
        )
        time.sleep(3)  # Alertmanager repeats and resolved notifications must not add commits
        assert lane.remote.commits_since_seed() == [commit]
        message = lane.remote.messages()[0]
        assert f"Why: automatic rollback: {text}" in message
        state = state_from_text(lane.remote.show(f"Pulumi.{STACK}.yaml"), STACK)
        assert state.weights == {Colour.BLUE: 100, Colour.GREEN: 0}
        metrics = lane.serve.metrics()
        assert 'rollout_rollbacks_total{result="rolled-back"} 1.0' in metrics


def test_alertmanager_without_the_token_is_refused_and_nothing_rolls_back(plan: Plan, tmp_path: Path) -> None:
    with AlertingLane(tmp_path, compressed(plan, 60), seed=12) as lane:
        lane.token_file.write_text(
            "not-the-token-at-all"
        )  # Alertmanager re-reads credentials_file per request
        lane.wait_for_traffic()
        lane.simulation.inject("green", db_down=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and 'reason="unauthorized"} 0.0' in lane.serve.metrics():
            time.sleep(0.5)
        assert (
            'rollout_webhook_notifications_rejected_total{reason="unauthorized"} 0.0'
            not in lane.serve.metrics()
        )
        assert lane.remote.commits_since_seed() == []
        assert "missing or wrong bearer token" in lane.serve.log_path.read_text()
        assert "not-the-token-at-all" not in lane.serve.log_path.read_text()
        assert httpx.get(f"{lane.serve.url}/healthz", timeout=5).status_code == 200


class NotifyReceiver:
    """Where Alertmanager sends the alerts that are not rollbacks (a chat webhook in production)."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[dict[str, object]]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def alerts(self, name: str) -> list[dict[str, object]]:
        return [
            alert
            for message in self.received
            for alert in message["alerts"]  # type: ignore[attr-defined]
            if alert["labels"]["alertname"] == name and alert["status"] == "firing"
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _rule_series(lane: AlertingLane) -> set[str]:
    from test_rule_series import series_names

    groups = json.loads((lane.root / "triggers.rules.json").read_text())["groups"]
    return {name for group in groups for rule in group["rules"] for name in series_names(rule["expr"])}


def test_every_series_the_trigger_rules_read_comes_from_the_service_or_the_controller(
    plan: Plan, tmp_path: Path
) -> None:
    """Live: Prometheus (Debian) holds only the plan's alert rules (no recording rule feeds them), and
    each series they read is scraped from a service version or from ``rollout serve``."""
    with AlertingLane(tmp_path, compressed(plan, 60), seed=13, missing_data_for="30s") as lane:
        lane.wait_for_traffic()
        deadline = time.monotonic() + 30
        query = 'count(markethub_rollout_measurement{metric=~"crash_rate|lb_unhealthy_hosts"})'
        while time.monotonic() < deadline and not [r for r in lane.query(query) if r["value"][1] == "2"]:  # type: ignore[index]
            time.sleep(0.5)
        rules = httpx.get(f"{lane.prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {rule["type"] for group in rules for rule in group["rules"]} == {"alerting"}
        allowed = {*(v.target for v in lane.simulation.versions.values()), lane.serve.target}
        read = _rule_series(lane)
        assert "markethub_rollout_measurement" in read
        for name in read:
            found = lane.query(f'count by (instance) ({{__name__="{name}"}})')
            instances = {str(r["metric"]["instance"]) for r in found}  # type: ignore[index]
            assert instances, f"{name}: no series in Prometheus"
            assert instances <= allowed, f"{name} comes from {instances - allowed}"
        crash = lane.query('markethub_rollout_measurement{metric="crash_rate"}')
        assert crash and crash[0]["metric"]["instance"] == lane.serve.target  # type: ignore[index]
        assert lane.firing() == []


def test_a_trigger_whose_data_goes_missing_notifies_and_does_not_roll_back(
    plan: Plan, tmp_path: Path
) -> None:
    notify = NotifyReceiver()
    try:
        with AlertingLane(
            tmp_path, compressed(plan, 60), seed=14, missing_data_for="3s", notify_url=notify.url
        ) as lane:
            lane.wait_for_traffic()
            time.sleep(5)
            assert notify.alerts("RollbackDataMissingCrashRate") == []
            lane.simulation.crash_reporter.stop()  # the crash reporter goes away
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not notify.alerts("RollbackDataMissingCrashRate"):
                time.sleep(0.5)
            (alert,) = notify.alerts("RollbackDataMissingCrashRate")[:1]
            labels = alert["labels"]  # type: ignore[index]
            assert (labels["rollout_action"], labels["rollout_trigger"]) == ("alert", "crash-rate")  # type: ignore[index]
            assert "cannot fire" in alert["annotations"]["summary"]  # type: ignore[index]
            assert lane.remote.commits_since_seed() == []
            phase = lane.serve.metrics()
            wanted = 'metric="crash_rate",phase="error",service="markethub-mobile"} 1.0'
            assert f"markethub_rollout_measurement_phase{{{wanted}" in phase
    finally:
        notify.stop()
