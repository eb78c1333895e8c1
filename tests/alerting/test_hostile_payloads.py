"""Hostile webhook requests, one row each: the bytes sent to `rollout serve`'s HTTP server, and its answer.

Each row goes over a real loopback socket to the real server (uvicorn + Starlette around
``WebhookReceiver.handle``, a real bare remote behind it). Every malformed request gets a 4xx with a
one-line error, never a dropped connection or a 5xx, and nothing is committed.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from alerting_helpers import TOKEN, alert, make_receiver, metric_value, notification

from rollout_policies.alerting import RunningReceiver, ServerLimits
from rollout_policies.plan.model import Plan
from simulator.harness import GitRemote

LIMITS = ServerLimits(header_timeout=1.5, body_timeout=1.5, idle_timeout=1)


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC).replace(microsecond=0)


NOW = _now()
GOOD = notification(alert(starts_at=NOW - timedelta(seconds=20)))  # type: ignore[operator]


def request(
    body: bytes,
    *,
    token: str | None = TOKEN,
    length: str | None = "auto",
    chunked: bool = False,
    path: str = "/alerts",
    method: str = "POST",
    extra: str = "",
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if chunked:
        head += "Transfer-Encoding: chunked\r\n"
        pieces = [body[i : i + 7000] for i in range(0, len(body), 7000)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return head.encode() + b"\r\n" + payload
    if length == "auto":
        head += f"Content-Length: {len(body)}\r\n"
    elif length is not None:
        head += f"Content-Length: {length}\r\n"
    return head.encode() + b"\r\n" + body


def with_alert(**changes: object) -> bytes:
    data = json.loads(GOOD)
    for key, value in changes.items():
        if key.startswith("alert."):
            data["alerts"][0][key[len("alert.") :]] = value
        else:
            data[key] = value
    return json.dumps(data).encode()


@dataclass(frozen=True)
class Row:
    id: str
    parts: tuple[bytes | float, ...]  # bytes to send; a float is a pause in seconds
    status: int
    error: str  # what the one-line answer must hold


NESTED = b'{"version": "4", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
NESTED_SHALLOW = b'{"version": "4", "deep": ' + b"[" * 40 + b"]" * 40 + b"}"
HUGE = b'{"version": "4", "pad": "' + b"x" * (2 << 20) + b'"}'

ROWS = [
    Row("deeply-nested-json", (request(NESTED),), 400, "body is nested deeper than 32 levels"),
    Row("nested-under-the-recursion-limit", (request(NESTED_SHALLOW),), 400, "nested deeper than 32"),
    Row(
        "starts-at-without-zone",
        (request(with_alert(**{"alert.startsAt": "2026-11-20T09:00:00"})),),
        400,
        "alerts.0.startsAt: Input should have timezone info",
    ),
    Row(
        "ends-at-without-zone",
        (request(with_alert(**{"alert.endsAt": "2026-11-20T09:00:00"})),),
        400,
        "alerts.0.endsAt: Input should have timezone info",
    ),
    Row(
        "starts-at-not-a-date",
        (request(with_alert(**{"alert.startsAt": "2026-13-45T99:00:00Z"})),),
        400,
        "alerts.0.startsAt",
    ),
    Row("labels-a-list", (request(with_alert(**{"alert.labels": ["a"]})),), 400, "alerts.0.labels"),
    Row(
        "label-value-a-number", (request(with_alert(**{"alert.labels": {"a": 1}})),), 400, "alerts.0.labels.a"
    ),
    Row("status-a-number", (request(with_alert(status=1)),), 400, "status: Input should be 'firing'"),
    Row("alerts-an-object", (request(with_alert(alerts={"a": 1})),), 400, "alerts: Input should be a valid"),
    Row("version-a-number", (request(with_alert(version=4)),), 422, "payload version 4"),
    Row("truncated-negative", (request(with_alert(truncatedAlerts=-1)),), 400, "truncatedAlerts"),
    Row(
        "nan",
        (request(GOOD.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": NaN')),),
        400,
        "NaN is not a JSON number",
    ),
    Row(
        "infinity",
        (request(GOOD.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": 1e999')),),
        400,
        "truncatedAlerts",
    ),
    Row(
        "integer-of-5000-digits",
        (request(GOOD.replace(b'"truncatedAlerts": 0', b'"truncatedAlerts": ' + b"9" * 5000)),),
        400,
        "body is not JSON",
    ),
    Row(
        "lone-surrogate",
        (request(with_alert(receiver="\ud800")),),
        400,
        "body holds text that is not Unicode",
    ),
    Row(
        "newline-in-receiver",
        (request(with_alert(receiver="a\nRollout-Decision: promote")),),
        400,
        "receiver: Value error, holds a control character",
    ),
    Row(
        "nul-in-generator-url",
        (request(with_alert(**{"alert.generatorURL": "http://p/\u0000"})),),
        400,
        "alerts.0.generatorURL: Value error, holds a control character",
    ),
    Row(
        "generator-url-not-http",
        (request(with_alert(**{"alert.generatorURL": "javascript:alert(1)"})),),
        400,
        "alerts.0.generatorURL: Value error, not an http(s) URL",
    ),
    Row(
        "fingerprint-with-spaces",
        (request(with_alert(**{"alert.fingerprint": "a b"})),),
        400,
        "alerts.0.fingerprint",
    ),
    Row("empty-body", (request(b""),), 400, "body is not JSON"),
    Row(
        "too-many-values",
        (request(b'{"version": "4", "v": [' + b",".join([b"0"] * 150_000) + b"]}"),),
        400,
        "body holds more than 100000 values",
    ),
    Row("huge-body", (request(HUGE),), 413, "body over 1048576 bytes"),
    Row("huge-chunked-body", (request(HUGE, chunked=True),), 413, "body over 1048576 bytes"),
    Row("declared-huge-sent-nothing", (request(b"", length=str(50 << 20)),), 413, "body over 1048576 bytes"),
    Row(
        "body-never-finishes",
        (request(GOOD, length=str(len(GOOD) + 100)),),
        408,
        "body not received within 1.5s",
    ),
    Row(
        "head-never-finishes",
        (b"POST /alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n",),
        408,
        "request head not received within 1.5s",
    ),
    Row(
        "head-one-byte-at-a-time",
        tuple(x for b in b"POST /alerts HTTP/1.1\r\nHost: a\r\n" for x in (bytes([b]), 0.1)),
        408,
        "request head not received within 1.5s",
    ),
    Row(
        "no-token-body-never-sent",
        (request(b"", token=None, length="500000"),),
        401,
        "missing or wrong bearer token",
    ),
    Row(
        "no-token-expect-continue",
        (request(b"", token=None, length="900", extra="Expect: 100-continue\r\n"),),
        401,
        "missing or wrong bearer token",
    ),
    Row("wrong-token-huge-body", (request(HUGE, token="x" * 26),), 401, "missing or wrong bearer token"),
    Row("bad-content-length", (request(GOOD, length="12abc"),), 400, "Invalid HTTP request received."),
    Row(
        "two-content-lengths",
        (request(GOOD, extra="Content-Length: 3\r\n"),),
        400,
        "Invalid HTTP request received.",
    ),
    Row(
        "headers-of-100k",
        (request(GOOD, extra=f"X-Pad: {'x' * 100_000}\r\n"),),
        431,
        "request headers over 16384 bytes",
    ),
    Row(
        "not-http",
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,),
        400,
        "Invalid HTTP request received.",
    ),
    Row(
        "get-on-the-webhook", (request(b"", method="GET", length=None),), 404, "GET /alerts: no such endpoint"
    ),
    Row("put-on-the-webhook", (request(GOOD, method="PUT"),), 404, "PUT /alerts: no such endpoint"),
    Row("dot-dot-path", (request(GOOD, path="/alerts/../admin"),), 404, "no such endpoint"),
]


def exchange(
    port: int, parts: tuple[bytes | float, ...], timeout: float = 20, host: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """Send the parts (a sender that keeps writing after an early answer is normal), read one answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        for part in parts:
            if isinstance(part, float):
                time.sleep(part)
                continue
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # answered (and closed) before the whole request was sent: read the answer
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer (got {data!r})"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        while length is None or len(body) < length:
            chunk = sock.recv(65536)  # no length: the answer ends when the server closes
            if not chunk:
                break
            body += chunk
        return status, body


@pytest.fixture(scope="module")
def served(
    plan: Plan, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningReceiver, GitRemote]]:
    root = tmp_path_factory.mktemp("hostile")
    remote = GitRemote(root)
    receiver = make_receiver(remote.clone(root / "clone", "serve"), plan, NOW)  # type: ignore[arg-type]
    with RunningReceiver(receiver, limits=LIMITS) as running:
        yield running, remote


@pytest.fixture(scope="module")
def plan() -> Plan:
    from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

    return load_plan(DEFAULT_PLAN)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_a_hostile_request_gets_a_4xx_with_one_line(
    served: tuple[RunningReceiver, GitRemote], row: Row
) -> None:
    running, remote = served
    status, body = exchange(running.port, row.parts)
    text = body.decode("utf-8", errors="replace").strip()
    error = json.loads(text)["error"] if text.startswith("{") else text
    assert (status, row.error in error) == (row.status, True), (status, error)
    assert "\n" not in error
    assert remote.commits_since_seed() == []


def test_a_chunked_notification_is_read_whole_and_rolls_back(plan: Plan, tmp_path: Path) -> None:
    remote = GitRemote(tmp_path)
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)  # type: ignore[arg-type]
    with RunningReceiver(receiver, limits=LIMITS) as running:
        status, body = exchange(running.port, (request(GOOD, chunked=True),))
        # the same connection is still usable: the chunks were not taken for a second request
        again, answer = exchange(running.port, (request(GOOD, chunked=True),))
    assert (status, json.loads(body)["result"]) == (200, "rolled-back")
    assert (again, json.loads(answer)["result"]) == (200, "duplicate")
    assert len(remote.commits_since_seed()) == 1


def test_refusals_are_counted_by_reason(served: tuple[RunningReceiver, GitRemote]) -> None:
    running, _ = served
    exchange(running.port, (b"POST /alerts HTTP/1.1\r\n",))
    status, metrics = exchange(running.port, (b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n",))
    assert status == 200
    assert (
        metric_value(metrics.decode(), 'rollout_webhook_notifications_rejected_total{reason="timeout"}') >= 1
    )


def test_beyond_the_connection_cap_a_request_gets_503_and_the_server_recovers(
    plan: Plan, tmp_path: Path
) -> None:
    remote = GitRemote(tmp_path)
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)  # type: ignore[arg-type]
    limits = ServerLimits(header_timeout=1.0, body_timeout=1.0, idle_timeout=1, max_connections=4)
    with RunningReceiver(receiver, limits=limits) as running:
        silent = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(4)]
        time.sleep(0.2)
        over, _ = exchange(running.port, (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",))
        for sock in silent:  # the silent ones are closed at the head deadline
            sock.settimeout(10)
            assert sock.recv(1024).startswith(b"HTTP/1.1 408")
            sock.close()
        time.sleep(0.2)
        after, body = exchange(running.port, (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",))
    assert over == 503
    assert (after, json.loads(body)) == (200, {"status": "ok"})


def test_the_server_listens_on_ipv6_loopback(plan: Plan, tmp_path: Path) -> None:
    remote = GitRemote(tmp_path)
    receiver = make_receiver(remote.clone(tmp_path / "clone", "serve"), plan, NOW)  # type: ignore[arg-type]
    with RunningReceiver(receiver, host="::1", limits=LIMITS) as running:
        status, _ = exchange(running.port, (b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",), host="::1")
    assert status == 200
    assert running.url == f"http://[::1]:{running.port}"
