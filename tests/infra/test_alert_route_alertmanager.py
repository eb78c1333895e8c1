"""The generated AlertmanagerConfig, run by a real Alertmanager (Debian's): rollback alerts reach the
controller's webhook with the bearer token from the webhook Secret, and every alert reaches Slack.

The object is translated the way the prometheus-operator does (``devenv.operator_config``: the
operator itself does not run here). Slack cannot be reached, so its incoming webhook is a recorder on
127.0.0.1; the controller's webhook is a recorder too (``tests/e2e/test_controller_e2e.py`` posts
to the real ``rollout serve``). The alerts carry exactly the labels of the generated rules.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import yaml
from infra_helpers import rollout, settings
from pulumi_render import deploy

from devenv.operator_config import translate
from devenv.services import ALERTMANAGER_BIN

pytestmark = [pytest.mark.services]
SERVICE = "markethub-mobile"
TOKEN = "webhook-token-0123456789abcdef"


class Recorder:
    """An HTTP endpoint on 127.0.0.1 that keeps every POST (headers and JSON body)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.requests.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[tuple[Recorder, Recorder]]:
    webhook, slack = Recorder(), Recorder()
    yield webhook, slack
    webhook.stop()
    slack.stop()


def _wait(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.25)
    return False


@pytest.mark.skipif(
    not __import__("os").path.exists(ALERTMANAGER_BIN), reason="Debian's Alertmanager missing"
)
def test_alertmanager_runs_the_route_with_the_token_and_drops_nothing(plan, recorders, alertmanager_factory):
    webhook, slack = recorders
    deployed = deploy(
        settings(state=rollout("limited", 1, 5), alerts={"webhookUrl": f"{webhook.url}/alerts"}), plan
    )
    manifest = deployed.one("AlertmanagerConfig", f"{SERVICE}-rollout")
    values = {
        ("rollout-webhook", "token"): TOKEN,
        ("rollout-notify", "slack-webhook-url"): f"{slack.url}/slack",
    }
    config = translate(manifest, lambda name, key: values[(name, key)])
    alertmanager = alertmanager_factory(yaml.safe_dump(config))

    rules = {
        rule["alert"]: rule
        for kind in ("rollback-triggers", "stage-alerts")
        for rule in deployed.one("PrometheusRule", f"{SERVICE}-{kind}")["spec"]["groups"][0]["rules"]
    }
    now = datetime.now(UTC).isoformat()
    fired = [
        {
            "labels": {"alertname": name, **rules[name]["labels"]},
            "annotations": rules[name]["annotations"],
            "startsAt": now,
        }
        for name in ("RollbackCrashRate", "GateAlertSearchSuccess")
    ]
    httpx.post(f"{alertmanager.url}/api/v2/alerts", json=fired, timeout=10).raise_for_status()

    # The rollback: at once (groupWait 0s), to the controller, with the Secret's token.
    assert _wait(lambda: webhook.requests, 20), "the rollback alert never reached the webhook"
    headers, body = webhook.requests[0]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert [a["labels"]["alertname"] for a in body["alerts"]] == ["RollbackCrashRate"]
    assert body["alerts"][0]["labels"]["rollout_stack"] == "prod-us-east-1"

    # Both, the gate alert and the trigger, reach people (after the route's 30s group wait).
    def slack_names() -> set[str]:
        return {
            line.split("] ", 1)[1].split(" (", 1)[0]
            for _, message in slack.requests
            for line in [message.get("attachments", [{}])[0].get("title", "")]
            if "] " in line
        }

    assert _wait(lambda: slack_names() >= {"RollbackCrashRate", "GateAlertSearchSuccess"}, 60), slack.requests
    assert all(
        name != "GateAlertSearchSuccess"
        for _, b in webhook.requests
        for name in [b["alerts"][0]["labels"]["alertname"]]
    )
