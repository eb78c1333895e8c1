"""Gate alerts notify: a firing gate alert (``rollout_action="alert"``) reaching ``rollout serve`` is
posted once, and rolls nothing back. Slack cannot be reached here: a local receiver stands in."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from alerting_helpers import AUTH, alert, make_receiver, notification

from rollout_policies.gitops.notify import Notifier
from rollout_policies.plan.model import Plan
from simulator.harness import GitRemote

NOW = datetime.now(UTC).replace(microsecond=0)


def _slack() -> tuple[str, list[dict[str, object]], ThreadingHTTPServer]:
    posts: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/services/x", posts, server


def test_a_firing_gate_alert_is_posted_once_and_rolls_nothing_back(
    remote: GitRemote, plan: Plan, tmp_path: Path
) -> None:
    url, posts, server = _slack()
    try:
        receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)
        receiver.notifier = Notifier(
            plan.notifications, environ={plan.notifications.slack_webhook_env or "": url}
        )
        gate = alert("api-error-rate", action="alert", starts_at=NOW - timedelta(seconds=20))
        gate["labels"]["rollout_metric"] = "api_error_rate"
        gate["annotations"] = {"summary": "API Error Rate beyond its alert threshold (> 1)"}
        body = notification(gate)
        first = receiver.handle("POST", "/alerts", AUTH, body)
        again = receiver.handle("POST", "/alerts", AUTH, body)  # Alertmanager's repeat
    finally:
        server.shutdown()
        server.server_close()
    assert json.loads(first.body)["result"] == "notified"
    assert json.loads(again.body)["result"] == "duplicate"
    assert len(posts) == 1
    assert "*GATE ALERT*" in str(posts[0]["text"])
    assert "api_error_rate" in json.dumps(posts[0])
    assert remote.commits_since_seed() == []
