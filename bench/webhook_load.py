"""Webhook load benchmark: slow unauthenticated connections against `rollout serve`, alerts served meanwhile.

Run: ``python -m bench.webhook_load [--slow 500] [--alerts 300] [--seconds 10]`` (``make bench-webhook``).

It starts the real command (``rollout serve --no-apply``, default limits unless flags say otherwise)
on 127.0.0.1 over a fresh bare remote, then at the same time:

- opens ``--slow`` connections that never send a token and trickle their request head one byte per
  second (slowloris); each is timed until the server closes it;
- sends ``--alerts`` authenticated notifications spread over ``--seconds``: one firing rollback alert
  (a real commit and push) sent three times at once, as three Alertmanager replicas (HA) send it,
  and distinct gate-alert notifications (parsed, validated, deduplicated, no action); each is timed
  from connect to answer, on a fresh connection.

It prints the figures and exits 1 when a slow connection outlived the header timeout by more than
``--grace`` seconds, or an alert was not answered 200. Bounded in time: everything stops after
header timeout + ``--seconds`` + 60 s. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from simulator.harness import STACK, GitRemote

HOST = "127.0.0.1"


def _alert(starts: datetime, fingerprint: str, action: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {
            "alertname": "RollbackDatabaseConnectionLoss" if action == "rollback" else "GateCrashRate",
            "rollout_action": action,
            "rollout_trigger": "database-connection-loss",
            "rollout_stack": STACK,
            "rollout_service": "markethub-mobile",
        },
        "annotations": {},
        "startsAt": starts.isoformat(),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def notification(group_key: str, fingerprint: str, action: str) -> bytes:
    starts = datetime.now(UTC) - timedelta(seconds=10)
    return json.dumps(
        {
            "version": "4",
            "groupKey": group_key,
            "status": "firing",
            "receiver": "rollout-webhook",
            "groupLabels": {},
            "commonLabels": {},
            "alerts": [_alert(starts, fingerprint, action)],
        }
    ).encode()


@dataclass
class Figures:
    slow_closed_after: list[float] = field(default_factory=list)
    slow_got_408: int = 0
    slow_still_open: int = 0
    alert_seconds: list[float] = field(default_factory=list)
    alert_statuses: list[int] = field(default_factory=list)
    alert_results: list[str] = field(default_factory=list)
    rollback_seconds: float | None = None
    other_seconds: list[float] = field(default_factory=list)  # alerts with nothing to roll back


class Serve:
    """`rollout serve` as its own process on a free loopback port, stopped by its pid."""

    def __init__(self, root: Path, token: str, extra: list[str]) -> None:
        self.remote = GitRemote(root)
        clone = self.remote.clone(root / "clone", "serve")
        rollout = Path(sys.executable).with_name("rollout")
        command = [str(rollout), "serve", "--repo", str(clone), "--stack", STACK, "--no-apply",
                   "--listen", f"{HOST}:0", "--actor", "bench", "--log-level", "warning", *extra]  # fmt: skip
        self.log_path = root / "serve.log"
        self.log = self.log_path.open("w")  # a file, not a pipe: a full pipe would stall the server
        self.process = subprocess.Popen(
            command,
            env={**os.environ, "ROLLOUT_WEBHOOK_TOKEN": token},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while not (found := re.search(r"listening on (http://\S+)", self.log_path.read_text())):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rollout serve did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        self.url = found.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


async def slow_connection(port: int, figures: Figures, give_up: float) -> None:
    """Trickle a head that never completes (and never carries a token) until the server closes."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection(HOST, port)
    head = b"POST /alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
    answer = b""
    try:
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                answer += await asyncio.wait_for(reader.read(4096), timeout=1.0)
            except TimeoutError:
                if time.monotonic() - start > give_up:
                    figures.slow_still_open += 1
                    return
                continue
            # Read until the server closes (EOF), then stop trickling.
            while chunk := await reader.read(4096):
                answer += chunk
            break
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        writer.close()
    figures.slow_closed_after.append(time.monotonic() - start)
    if answer.startswith(b"HTTP/1.1 408"):
        figures.slow_got_408 += 1


async def send_alert(client: httpx.AsyncClient, url: str, token: str, body: bytes, figures: Figures) -> None:
    start = time.monotonic()
    response = await client.post(
        f"{url}/alerts", content=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    elapsed = time.monotonic() - start
    figures.alert_seconds.append(elapsed)
    figures.alert_statuses.append(response.status_code)
    result = response.json().get("result", response.json().get("reason", "?"))
    figures.alert_results.append(result)
    if result == "rolled-back":
        figures.rollback_seconds = elapsed
    elif result == "no-action":
        figures.other_seconds.append(elapsed)


async def attack(
    url: str, port: int, token: str, slow: int, alerts: int, seconds: float, give_up: float
) -> Figures:
    figures = Figures()
    slow_tasks = [asyncio.create_task(slow_connection(port, figures, give_up)) for _ in range(slow)]
    await asyncio.sleep(1.0)  # every slow connection is open before the first alert
    rollback = notification("rollback-group", "a1b2c3d4e5f60718", "rollback")
    bodies = [notification(f"gate-group-{index}", f"{index:016x}", "alert") for index in range(alerts - 3)]
    bodies[:0] = [rollback] * 3  # the same notification from three Alertmanager replicas
    # A fresh connection per alert, as a restarted Alertmanager would open: the worst case.
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        alert_tasks = []
        for index, body in enumerate(bodies):
            alert_tasks.append(asyncio.create_task(send_alert(client, url, token, body, figures)))
            if index >= 2:  # the replicas' copies go out together
                await asyncio.sleep(seconds / alerts)
        await asyncio.gather(*alert_tasks)
    await asyncio.gather(*slow_tasks)
    return figures


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def run(slow: int, alerts: int, seconds: float, header_timeout: float, grace: float) -> tuple[Figures, Serve]:
    root = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    token = secrets.token_urlsafe(24)
    serve = Serve(root, token, ["--header-timeout", f"{header_timeout:g}s"])
    try:
        give_up = header_timeout + grace + 5
        figures = asyncio.run(
            asyncio.wait_for(
                attack(serve.url, serve.port, token, slow, alerts, seconds, give_up),
                timeout=header_timeout + seconds + 60,
            )
        )
    finally:
        serve.stop()
    return figures, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=500, help="slow unauthenticated connections")
    parser.add_argument("--alerts", type=int, default=300, help="authenticated notifications")
    parser.add_argument("--seconds", type=float, default=10.0, help="spread the alerts over this")
    parser.add_argument("--header-timeout", type=float, default=10.0, help="rollout serve --header-timeout")
    parser.add_argument("--grace", type=float, default=2.0, help="allowed lateness of a drop, seconds")
    args = parser.parse_args(argv)
    started = time.monotonic()
    figures, serve = run(args.slow, args.alerts, args.seconds, args.header_timeout, args.grace)
    commits = len(serve.remote.commits_since_seed())
    closed = figures.slow_closed_after
    late = [t for t in closed if t > args.header_timeout + args.grace]
    early = [t for t in closed if t < args.header_timeout - 0.5]
    ok = figures.alert_statuses.count(200)
    machine = f"{platform.machine()}, CPython {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}"
    print(f"rollout serve ({serve.url}), header timeout {args.header_timeout:g}s; {machine}")
    print(f"slow unauthenticated connections: {args.slow}; closed by the server: {len(closed)} "
          f"(408 sent to {figures.slow_got_408}); still open at {args.header_timeout + args.grace + 5:g}s: "
          f"{figures.slow_still_open}")  # fmt: skip
    if closed:
        print(f"  closed after: min {min(closed):.2f}s, median {statistics.median(closed):.2f}s, "
              f"max {max(closed):.2f}s (late: {len(late)}, early: {len(early)})")  # fmt: skip
    seconds = figures.alert_seconds
    results = dict(sorted((r, figures.alert_results.count(r)) for r in set(figures.alert_results)))
    print(
        f"authenticated alerts: {len(seconds)} over {args.seconds:g}s; answered 200: {ok}; results {results}"
    )
    if seconds:
        other = figures.other_seconds or [0.0]
        print(
            f"  connect -> answer, all: p50 {percentile(seconds, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(seconds, 0.99) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms; "
            f"with nothing to roll back: p99 {percentile(other, 0.99) * 1000:.0f} ms, "
            f"max {max(other) * 1000:.0f} ms; "
            f"the rollback itself {(figures.rollback_seconds or 0) * 1000:.0f} ms"
        )
    print(f"rollback commits on the remote: {commits}; wall time {time.monotonic() - started:.1f}s")
    failed = figures.slow_still_open or late or ok != len(seconds) or commits != 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
