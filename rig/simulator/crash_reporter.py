"""A mobile crash reporter's stability API, as the service's own crash reporting would serve it.

The app reports every session start and every crash to its crash reporter (Crashlytics, Sentry, ...);
the reporter answers ``GET /api/v1/stability?track=candidate&window=5m`` with the share of sessions
in the window that crashed: ``{"data": {"crash_rate_percent": 2.5, "sessions": 400, "crashes": 10}}``
(``null`` when the window has no session). That is the plan's ``crash_rate`` source; the product
reads it with its ``json_http`` provider like any other JSON API.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from rollout_policies.plan.model import parse_duration

HOST = "127.0.0.1"
RETENTION_SECONDS = 3600.0  # the widest window asked for; older reports are dropped


class CrashReporter:
    """Session and crash reports per track, and the stability API over them, on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        self._reports: dict[str, deque[tuple[float, bool]]] = {}
        reporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if reporter.stopped.is_set():
                    # Gone: a kept-alive connection must not outlive the server and keep answering.
                    self.close_connection = True
                    return
                status, body = reporter.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((HOST, port), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="sim-crashes", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def report(self, track: str, crashed: bool) -> None:
        """One session of the app on ``track``, and whether it crashed (what the app's SDK sends)."""
        now = time.time()
        with self._lock:
            reports = self._reports.setdefault(track, deque())
            reports.append((now, crashed))
            while reports and now - reports[0][0] > RETENTION_SECONDS:
                reports.popleft()

    def stability(self, track: str, window_seconds: float) -> dict[str, Any]:
        since = time.time() - window_seconds
        with self._lock:
            recent = [crashed for at, crashed in self._reports.get(track, ()) if at >= since]
        sessions, crashes = len(recent), sum(recent)
        rate = 100.0 * crashes / sessions if sessions else None
        return {"track": track, "sessions": sessions, "crashes": crashes, "crash_rate_percent": rate}

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        url = urlparse(path)
        if url.path != "/api/v1/stability":
            return 404, {"error": f"GET {url.path}: no such endpoint"}
        query = parse_qs(url.query)
        track = (query.get("track") or [""])[0]
        if not track:
            return 400, {"error": "track: required (stable or candidate)"}
        try:
            window = parse_duration((query.get("window") or ["5m"])[0]).total_seconds()
        except ValueError as err:
            return 400, {"error": f"window: {err}"}
        if not 0 < window <= RETENTION_SECONDS:
            return 400, {"error": f"window: must be above 0 and at most {RETENTION_SECONDS:g}s"}
        return 200, {"data": {**self.stability(track, window), "window_seconds": window}}

    def start(self) -> CrashReporter:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
