"""Side effects after the work: a failed notification is one warning line, never a failed command.

One row per hostile Slack webhook URL (the variable the plan names). Each row runs `rollout rollback`
(its work is done once the commit is on main) and `rollout promote` on a hold, through the command
line, against a real bare remote. Slack cannot be reached from here: a local HTTP server stands in
for its webhook (answering 200, or 500 for the failing row).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from gitops_fixtures import Remote, git, run, write_plan_file

HOLD_METRICS = "observed_at: 2026-11-20T10:29:00Z\nmetrics:\n  crash_rate: {value: 1.5}\n"


class Slack:
    """Answers every POST with ``status``; counts what it received."""

    def __init__(self, status: int) -> None:
        self.received = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.received += 1
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/T0/B0/secret-token"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slack_ok() -> Iterator[Slack]:
    server = Slack(200)
    yield server
    server.close()


@pytest.fixture
def slack_500() -> Iterator[Slack]:
    server = Slack(500)
    yield server
    server.close()


# (id, URL given the Slack server's URL, the one warning line or None when it is delivered)
ROWS = [
    ("trailing-newline", lambda url: url + "\n", None),
    ("surrounding-spaces", lambda url: f"  {url}  ", None),
    (
        "unreachable",
        lambda url: "http://127.0.0.1:9/services/secret-token",
        "Slack notification failed: ConnectError",
    ),
    ("server-error", None, "Slack notification failed: HTTP 500"),
    (
        "newline-inside",
        lambda url: url.replace("/services", "/serv\nices"),
        "Slack notification failed: InvalidURL",
    ),
    ("not-a-url", lambda url: "secret-token", "Slack notification failed: UnsupportedProtocol"),
    (
        "bad-port",
        lambda url: "http://127.0.0.1:99999/secret-token",
        "Slack notification failed: ConnectError",
    ),
    ("no-host", lambda url: "http:///secret-token", "Slack notification failed: UnsupportedProtocol"),
    ("unclosed-ipv6", lambda url: "http://[::1/secret-token", "Slack notification failed: InvalidURL"),
]


@pytest.mark.parametrize(("row", "url_for", "warning"), ROWS, ids=[r[0] for r in ROWS])
def test_a_failed_notification_is_one_warning_and_the_command_still_succeeds(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    slack_ok: Slack, slack_500: Slack, row: str, url_for: object, warning: str | None,
) -> None:  # fmt: skip
    slack = slack_500 if url_for is None else slack_ok
    url = slack.url if url_for is None else url_for(slack.url)  # type: ignore[operator]
    monkeypatch.setenv("TEST_SLACK_URL", url)
    monkeypatch.delenv("TEST_PD_KEY", raising=False)
    clone = remote.clone("work")
    plan = write_plan_file(tmp_path)
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(HOLD_METRICS)
    common = ["--plan", str(plan), "--repo", str(clone), "--stack", "prod-us"]

    code, out, err = run(
        ["promote", *common, "--metrics-file", str(metrics), "--now", "2026-11-20T10:30:00Z", "--no-pr"],
        capsys,
    )
    assert code == 0, err
    assert out.splitlines()[0].startswith("held: prod-us: hold")
    warnings = [line.strip() for line in out.splitlines() if "warning:" in line]
    assert warnings == ([f"warning: {warning}"] if warning else [])

    before = remote.log()
    code, out, err = run(["rollback", *common, "--reason", "crash", "--now", "2026-11-20T11:00:00Z"], capsys)
    assert code == 0, err
    assert out.startswith("rolled-back: rolled back prod-us")
    assert len(remote.log()) == len(before) + 1
    warnings = [line.strip() for line in out.splitlines() if "warning:" in line]
    assert warnings == ([f"warning: {warning}"] if warning else [])
    assert "secret" not in out + err
    assert slack.received == (2 if warning is None or row == "server-error" else 0)
    assert git(remote.bare, "log", "-1", "--format=%s", "main").startswith("rollout(prod-us): roll back")
