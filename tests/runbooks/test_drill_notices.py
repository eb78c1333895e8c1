"""Drills notify: an executed drill posts its verdict and objectives; a failed one also pages.
Slack and PagerDuty cannot be reached here: a local receiver stands in (``httpx.MockTransport``
would skip the HTTP layer, so a real loopback server is used)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rollout_policies.gitops.notify import notify_drill
from rollout_policies.plan.model import Notifications
from runbooks.report import DrillRecorder, StepFailed


def _receiver() -> tuple[str, list[tuple[str, dict[str, object]]], ThreadingHTTPServer]:
    received: list[tuple[str, dict[str, object]]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["content-length"])))))
            status = 202 if self.path.startswith("/v2/") else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", received, server


def _report(fail: bool):  # type: ignore[no-untyped-def]
    recorder = DrillRecorder("backup-restore", executed=True, now=lambda: datetime(2026, 12, 1, tzinfo=UTC))
    try:
        with recorder.step("restore") as step:
            if fail:
                raise StepFailed("no dump with a manifest")
            step.detail = "restored"
    except StepFailed:
        pass
    recorder.objective("rto", 1800, 4.7)
    return recorder.finish()


def test_a_drill_posts_its_verdict_and_a_failed_drill_pages() -> None:
    url, received, server = _receiver()
    config = Notifications(slack_webhook_env="SLACK", pagerduty_routing_key_env="PD")
    environ = {"SLACK": f"{url}/services/x", "PD": "key", "PAGERDUTY_EVENTS_URL": f"{url}/v2/enqueue"}
    try:
        assert notify_drill(_report(fail=False), config, "a.md", environ=environ) == []
        assert notify_drill(_report(fail=True), config, "b.md", environ=environ) == []
    finally:
        server.shutdown()
        server.server_close()
    slack = [body for path, body in received if path.startswith("/services/")]
    pages = [body for path, body in received if path.startswith("/v2/")]
    assert "*DRILL* backup-restore: PASSED" in str(slack[0]["text"])
    assert "*DRILL* backup-restore: FAILED" in str(slack[1]["text"])
    assert len(pages) == 1 and pages[0]["dedup_key"] == "rollout/drill/backup-restore"
