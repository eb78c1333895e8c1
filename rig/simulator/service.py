"""One version (colour) of a small MarketHub-like HTTP service, with Prometheus metrics and injectable faults.

Endpoints: ``GET /browse`` (a session's first page; served from cache, so it works without the
database), ``GET /search``, ``POST /cart``, ``POST /checkout`` (these need the database),
``GET /healthz``, ``GET /metrics``, and ``GET``/``POST /admin/faults`` to read or set the faults.

Faults: ``error_rate`` (share of requests answered 500), ``latency_ms`` (added to every answer,
health checks included, so a load balancer's checks time out), ``crash_rate`` (share of sessions
whose app crashes: the connection drops without an answer) and ``db_down`` (database connection
lost: the connection gauge reads 0 and database endpoints answer 503).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from simulator.crash_reporter import CrashReporter

HOST = "127.0.0.1"
SERVICE = "markethub-mobile"
ENDPOINTS = {"/browse": "GET", "/search": "GET", "/cart": "POST", "/checkout": "POST"}
NEEDS_DB = frozenset({"/search", "/cart", "/checkout"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Faults:
    """What is wrong with a version right now. The defaults are a healthy service's background noise."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    crash_rate: float = 0.0
    db_down: bool = False

    @classmethod
    def from_json(cls, data: Any, current: Faults) -> Faults:
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        unknown = set(data) - {"error_rate", "latency_ms", "crash_rate", "db_down"}
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        updated = replace(current, **data)
        for name in ("error_rate", "crash_rate"):
            value = getattr(updated, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number from 0 to 1")
        if isinstance(updated.latency_ms, bool) or not isinstance(updated.latency_ms, (int, float)):
            raise ValueError("latency_ms must be a number")
        if not 0 <= updated.latency_ms <= 60_000:
            raise ValueError("latency_ms must be from 0 to 60000")
        if not isinstance(updated.db_down, bool):
            raise ValueError("db_down must be true or false")
        return updated


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    version: ServiceVersion

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a health check timing out on injected latency) is expected here.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode())

    def _route(self, method: str) -> None:
        version = self.server.version
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/metrics" and method == "GET":
            return self._send(200, generate_latest(version.registry), CONTENT_TYPE_LATEST)
        if path == "/admin/faults":
            if method == "GET":
                return self._json(200, asdict(version.faults))
            try:
                version.set_faults(Faults.from_json(json.loads(body or b"{}"), version.faults))
            except ValueError as err:  # json.JSONDecodeError is a ValueError too
                return self._json(400, {"error": str(err)})
            return self._json(200, asdict(version.faults))
        if path == "/healthz" and method == "GET":
            version.delay()
            return self._json(200, {"status": "ok", "colour": version.colour})
        if ENDPOINTS.get(path) != method:
            return self._json(404, {"error": f"{method} {path}: no such endpoint"})
        status = version.serve(path)
        if status is None:
            self.close_connection = True  # the app crashed mid-request: no answer at all
            return None
        return self._json(status, {"colour": version.colour, "endpoint": path})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")


class ServiceVersion:
    """One colour of the service on 127.0.0.1; ``track`` is ``stable`` or ``candidate`` (the plan's label)."""

    def __init__(
        self,
        colour: str,
        track: str,
        *,
        port: int = 0,
        seed: int | None = None,
        faults: Faults | None = None,
        crash_reporter: CrashReporter | None = None,
    ) -> None:
        self.colour = colour
        self.crash_reporter = crash_reporter  # where the app reports its sessions and crashes
        self.track = track
        self.faults = faults or Faults()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        labels = {"service": SERVICE, "colour": colour, "track": track}
        self._labels = labels
        self.requests = Counter(
            "http_server_requests",
            "Requests by endpoint and status code",
            [*labels, "endpoint", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_server_request_duration_seconds",
            "Time to answer",
            [*labels, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sessions = Counter(
            "markethub_sessions", "App sessions started", list(labels), registry=self.registry
        )
        self.crashes = Counter(
            "markethub_crashes", "App sessions that crashed", list(labels), registry=self.registry
        )
        self.db_up = Gauge(
            "markethub_db_connection_up",
            "1 when connected to the database",
            list(labels),
            registry=self.registry,
        )
        self.db_errors = Counter(
            "markethub_db_connection_errors",
            "Requests that failed for want of a database connection",
            list(labels),
            registry=self.registry,
        )
        for endpoint in ENDPOINTS:
            for code in ("200", "500", "503"):
                self.requests.labels(**labels, endpoint=endpoint, code=code)
        self.sessions.labels(**labels)
        self.crashes.labels(**labels)
        self.db_errors.labels(**labels)
        self.db_up.labels(**labels).set(1)
        self.server = _Server((HOST, port), _Handler)
        self.server.version = self
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"sim-{colour}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self.db_up.labels(**self._labels).set(0 if faults.db_down else 1)

    def delay(self) -> None:
        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000.0)

    def _chance(self, probability: float) -> bool:
        with self._lock:
            return self._random.random() < probability

    def serve(self, endpoint: str) -> int | None:
        """Answer one request: a status code, or None when the app crashed (the session ends)."""
        started = time.perf_counter()
        faults = self.faults
        self.delay()
        if endpoint == "/browse":
            self.sessions.labels(**self._labels).inc()
            crashed = self._chance(faults.crash_rate)
            if self.crash_reporter is not None:
                self.crash_reporter.report(self.track, crashed)
            if crashed:
                self.crashes.labels(**self._labels).inc()
                return None
        if endpoint in NEEDS_DB and faults.db_down:
            self.db_errors.labels(**self._labels).inc()
            code = 503
        elif self._chance(faults.error_rate):
            code = 500
        else:
            code = 200
        self.requests.labels(**self._labels, endpoint=endpoint, code=str(code)).inc()
        self.latency.labels(**self._labels, endpoint=endpoint).observe(time.perf_counter() - started)
        return code

    def start(self) -> ServiceVersion:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
