"""The rehearsal's world: what the simulated users leave behind in every data source the plan reads.

The plan reads four providers. Here each is the real thing, fed by the simulated users' sessions
(``simulator.traffic.SessionRecord``), never by values chosen to pass a gate:

- Prometheus scrapes the service versions (requests, latency, database gauge), the load balancer,
  and ``Telemetry``: the app's own telemetry (load time, API latency as the app saw it, memory,
  battery, database query time, CDN hits), derived from each session's real answers;
- ``Analytics`` writes the analytics tables of PostgreSQL (sessions, screens, carts, searches, key
  flows, user snapshots and days, push deliveries, acquisition, cohort retention);
- ``Reporters`` serves the crash reporter's, the survey tool's and the issue tracker's JSON APIs;
- ``CloudWatchFeed`` puts the load balancer's health into CloudWatch on the moto server.

Healthy behaviour (survey scores, opt-in shares) is drawn per user from fixed distributions;
faults injected into a version change what its users experience and so every source at once.
A ``silent`` source answers with no data, as a reporter whose pipeline stalled.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from simulator.service import HOST, NEEDS_DB, SERVICE
from simulator.traffic import SessionRecord

TRACKS = {"blue": "stable", "green": "candidate"}  # the colours' roles for this rollout
APP_LOAD_BASE_SECONDS = 1.2  # cold start before the first request


def track_of(colour: str) -> str:
    return TRACKS.get(colour, "stable")


# -- Prometheus: the app's telemetry -----------------------------------------------------------------


class Telemetry:
    """The app's telemetry as Prometheus series, on its own /metrics endpoint (one per region)."""

    def __init__(self, region: str, seed: int | None = None) -> None:
        self.region = region
        self.registry = CollectorRegistry()
        labels = ["service", "colour", "track"]
        self.app_load = Histogram(
            "markethub_app_load_seconds", "Cold start to first screen", labels, registry=self.registry
        )
        self.api = Histogram(
            "markethub_api_request_duration_seconds",
            "API latency seen by the app",
            labels,
            registry=self.registry,
        )
        self.db_query = Histogram(
            "markethub_db_query_duration_seconds", "Database query time", labels, registry=self.registry
        )
        self.memory = Gauge(
            "markethub_app_memory_bytes", "App resident memory", labels, registry=self.registry
        )
        self.battery = Gauge(
            "markethub_app_battery_drain_percent_per_hour", "Battery drain", labels, registry=self.registry
        )
        self.cdn_hits = Counter("markethub_cdn_cache_hits", "CDN cache hits", labels, registry=self.registry)
        self.cdn_requests = Counter("markethub_cdn_requests", "CDN requests", labels, registry=self.registry)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        for colour in TRACKS:
            key = (SERVICE, colour, track_of(colour))
            self.memory.labels(*key).set(110e6)
            self.battery.labels(*key).set(3.4)
        self.server, self.thread = start_http_server(0, addr=HOST, registry=self.registry)
        self.port: int = self.server.server_address[1]

    @property
    def target(self) -> str:
        return f"{HOST}:{self.port}"

    def observe(self, record: SessionRecord) -> None:
        key = (SERVICE, record.colour, track_of(record.colour))
        with self._lock:
            jitter = self._random.uniform(-0.2, 0.2)
            hit = self._random.random() < 0.97
        answered = [
            (path, status, seconds) for path, status, seconds in record.requests if status is not None
        ]
        if answered:
            self.app_load.labels(*key).observe(APP_LOAD_BASE_SECONDS + jitter + answered[0][2])
        for path, status, seconds in answered:
            self.api.labels(*key).observe(seconds)
            if path in NEEDS_DB and status == 200:
                self.db_query.labels(*key).observe(0.02 + seconds)
        self.cdn_requests.labels(*key).inc()
        if hit:
            self.cdn_hits.labels(*key).inc()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- PostgreSQL: the analytics tables ------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (session_id bigint, user_id bigint, track text, region text,
  started_at timestamptz, ended_at timestamptz, ordered boolean);
CREATE TABLE IF NOT EXISTS screen_views (user_id bigint, track text, viewed_at timestamptz,
  dropped_off boolean);
CREATE TABLE IF NOT EXISTS carts (user_id bigint, track text, created_at timestamptz, order_id bigint);
CREATE TABLE IF NOT EXISTS orders (order_id bigint, user_id bigint, track text, placed_at timestamptz,
  total_usd numeric);
CREATE TABLE IF NOT EXISTS searches (user_id bigint, track text, searched_at timestamptz,
  clicked_result boolean);
CREATE TABLE IF NOT EXISTS key_flows (user_id bigint, track text, started_at timestamptz, completed boolean);
CREATE TABLE IF NOT EXISTS user_snapshots (user_id bigint, track text, snapshot_at timestamptz,
  rewards_member boolean, push_opted_in boolean, redeemed_points boolean);
CREATE TABLE IF NOT EXISTS user_days (user_id bigint, track text, day_end timestamptz, used_chat boolean,
  shared boolean);
CREATE TABLE IF NOT EXISTS push_deliveries (track text, sent_at timestamptz, delivered integer,
  clicks integer);
CREATE TABLE IF NOT EXISTS acquisition_vs_baseline (track text, computed_at timestamptz,
  growth_percent numeric);
CREATE TABLE IF NOT EXISTS cohort_retention (track text, cohort_started_at timestamptz, day integer,
  retention_percent numeric, computed_at timestamptz);
CREATE INDEX IF NOT EXISTS sessions_at ON sessions (track, started_at);
CREATE INDEX IF NOT EXISTS snapshots_at ON user_snapshots (track, snapshot_at);
"""


@dataclass(frozen=True)
class Habits:
    """One user's lasting traits, drawn once (shares chosen as a healthy app's)."""

    rewards_member: bool
    push_opted_in: bool
    redeems_points: bool
    chats: bool
    shares: bool

    @classmethod
    def draw(cls, rng: random.Random) -> Habits:
        return cls(
            rewards_member=rng.random() < 0.82,
            push_opted_in=rng.random() < 0.72,
            redeems_points=rng.random() < 0.56,
            chats=rng.random() < 0.45,
            shares=rng.random() < 0.20,
        )


@dataclass
class Analytics:
    """Writes the users' sessions into the analytics database, in batches every ``flush_seconds``.

    ``day`` is the length of a calendar day in wall seconds (86400 divided by the rehearsal's
    scale): session lengths, daily snapshots and cohort ages are in calendar time.
    """

    dsn: str
    region: str
    day: float
    flush_seconds: float = 1.0
    seed: int | None = None
    weight: int = 1  # sessions (of distinct users) each simulated session stands for
    retention_days: tuple[int, ...] = (1, 7, 30)
    _rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    _habits: dict[int, Habits] = field(default_factory=dict)
    _exposed_at: dict[str, float] = field(default_factory=dict)  # track -> wall time of first session
    _next_id: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"analytics-{self.region}", daemon=True)
        self.errors: deque[str] = deque(maxlen=20)
        self.silent = False  # a stalled pipeline: nothing new reaches the tables

    def create_schema(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as connection:
            connection.execute(SCHEMA)

    def _add(self, table: str, row: tuple[Any, ...]) -> None:
        self._rows.setdefault(table, []).append(row)

    def habits(self, user: int) -> Habits:
        if user not in self._habits:
            self._habits[user] = Habits.draw(self._random)
        return self._habits[user]

    def observe(self, record: SessionRecord) -> None:
        if record.user is None:
            return
        for copy in range(self.weight):
            self._observe_one(record, record.user * self.weight + copy)

    def _observe_one(self, record: SessionRecord, user: int) -> None:
        """One row set per session. A healthy session's funnel (search, cart, order) is drawn for each
        of the users it stands for; a failed one keeps what really happened to it."""
        now = datetime.now(UTC)
        track = track_of(record.colour)
        paths = {path: status for path, status, _ in record.requests}
        healthy = record.outcome == "ok"
        with self._lock:
            self._exposed_at.setdefault(track, time.time())
            self._next_id += 1
            session_id = self._next_id + (hash(self.region) % 1000) * 10**9
            rng = self._random
            if healthy:
                searched, carted = rng.random() < 0.8, rng.random() < 0.5
                ordered = carted and rng.random() < 0.62
            else:
                searched, carted = "/search" in paths, paths.get("/cart") == 200
                ordered = paths.get("/checkout") == 200
            # Calendar minutes, scaled like all calendar time (the plan copy's query scales them back).
            minutes = rng.uniform(5.5, 9.0) if healthy else rng.uniform(0.5, 2.0)
            started = now - timedelta(seconds=minutes * 60 * self.day / 86400)
            self._add("sessions", (session_id, user, track, self.region, started, now, ordered))
            for _ in range(3):
                self._add("screen_views", (user, track, now, (not healthy) or rng.random() < 0.10))
            if searched:
                self._add("searches", (user, track, now, healthy and rng.random() < 0.93))
            if carted:
                self._add("carts", (user, track, now, session_id if ordered else None))
            if ordered:
                self._add("orders", (session_id, user, track, now, round(rng.uniform(25, 90), 2)))
            self._add("key_flows", (user, track, now, healthy))
            habits = self.habits(user)
            self._add(
                "user_snapshots",
                (user, track, now, habits.rewards_member, habits.push_opted_in, habits.redeems_points),
            )
            self._add("user_days", (user, track, now, habits.chats, habits.shares))

    def _periodic(self, now: datetime) -> None:
        """Rows the analytics jobs compute on a schedule: push campaigns, acquisition, cohort retention."""
        with self._lock:
            for track, first in self._exposed_at.items():
                self._add("push_deliveries", (track, now, 100, self._random.randint(10, 13)))
                self._add("acquisition_vs_baseline", (track, now, round(self._random.uniform(6.5, 8.5), 2)))
                age_days = (time.time() - first) / self.day
                cohort_start = datetime.fromtimestamp(round(first, 3), UTC)
                for day, healthy in zip(self.retention_days, (90.0, 66.0, 45.0), strict=False):
                    if age_days >= day:  # a cohort says nothing about N-day retention before N days
                        self._add("cohort_retention", (track, cohort_start, day, healthy, now))

    def flush(self) -> int:
        import psycopg

        self._periodic(datetime.now(UTC))
        with self._lock:
            batches, self._rows = self._rows, {}
        if self.silent:
            return 0
        written = 0
        with psycopg.connect(self.dsn, autocommit=True) as connection, connection.cursor() as cursor:
            for table, rows in batches.items():
                if not rows:
                    continue
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                written += len(rows)
        return written

    def _loop(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception as err:  # the database away (a fault): keep the users going, say why
                self.errors.append(f"{type(err).__name__}: {str(err).strip()[:200]}")

    def start(self) -> Analytics:
        self.create_schema()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# -- JSON APIs: crash reporter, survey tool, issue tracker ---------------------------------------------


class Reporters:
    """The crash reporter, survey tool and issue tracker as one HTTP server with three base paths, and
    Slack's incoming webhook (``POST /slack``, kept in ``notices``).

    ``base_urls`` is what ``ROLLOUT_JSON_BASE_URLS`` names (``crash_reporter=...,surveys=...``).
    The crash reporter counts the sessions it was told about (``observe``), per track, in the window
    the query asks for; ``window_scale`` divides that window like the plan's trigger windows.
    """

    def __init__(self, *, window_scale: float = 1.0, seed: int | None = None) -> None:
        self.window_scale = window_scale
        self._sessions: deque[tuple[float, str, bool]] = deque(maxlen=200_000)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.silent: set[str] = set()  # bases that answer with no data
        # Slack's incoming webhook for the controllers' and Alertmanager's notices (POST /slack).
        self.notices: list[Any] = []
        reporters = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = reporters.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if urlsplit(self.path).path != "/slack":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with reporters._lock:
                    reporters.notices.append(json.loads(body or b"null"))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="reporters", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_urls(self) -> dict[str, str]:
        return {name: f"{self.url}/{name}" for name in ("crash_reporter", "surveys", "issue_tracker")}

    def observe(self, record: SessionRecord) -> None:
        with self._lock:
            self._sessions.append((time.time(), track_of(record.colour), record.outcome == "crashed"))

    def crash_rate(self, track: str, window_seconds: float) -> tuple[float | None, int]:
        since = time.time() - window_seconds
        with self._lock:
            seen = [crashed for at, kind, crashed in self._sessions if at >= since and kind == track]
        if not seen:
            return None, 0
        return 100.0 * sum(seen) / len(seen), len(seen)

    def answer(self, path: str) -> tuple[int, Any]:
        parts = urlsplit(path)
        base, _, rest = parts.path.lstrip("/").partition("/")
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if base in self.silent:
            return 200, {"data": {}, "total": None}
        if base == "crash_reporter" and rest == "api/v1/stability":
            window = _seconds(query.get("window", "5m")) / self.window_scale
            rate, sessions = self.crash_rate(query.get("track", "candidate"), window)
            return 200, {"data": {"crash_rate_percent": rate, "sessions": sessions}}
        if base == "surveys" and rest == "api/v1/surveys/nps/summary":
            with self._lock:
                score = round(self._random.uniform(7.9, 8.6), 2)
            return 200, {"data": {"average_score": score, "responses": 120}}
        if base == "issue_tracker" and rest == "api/v1/issues/count":
            return 200, {"total": 0}
        return 404, {"error": f"no such endpoint: {parts.path}"}

    def start(self) -> Reporters:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _seconds(text: str) -> float:
    from rollout_policies.plan.model import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        return 300.0


# -- CloudWatch on moto: the load balancer's health ---------------------------------------------------


@dataclass
class CloudWatchFeed:
    """Puts the candidate target group's health into CloudWatch every ``every`` seconds.

    ``unhealthy`` reads how many candidate hosts fail their health checks now (every region's load
    balancer together, as the plan's single candidate target group). The dimensions are the plan's.
    """

    client: Any
    unhealthy: Callable[[], float]
    every: float = 2.0
    silent: bool = False
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cloudwatch-feed", daemon=True)

    def put(self) -> None:
        if self.silent:
            return
        count = float(self.unhealthy())
        now = datetime.now(UTC)
        self.client.put_metric_data(
            Namespace="AWS/ApplicationELB",
            MetricData=[
                {
                    "MetricName": "UnHealthyHostCount",
                    "Dimensions": [
                        {"Name": "LoadBalancer", "Value": f"app/{SERVICE}/candidate"},
                        {"Name": "TargetGroup", "Value": f"targetgroup/{SERVICE}-candidate"},
                    ],
                    "Timestamp": now,
                    "Value": count,
                }
            ],
        )
        self.client.put_metric_data(
            Namespace="AWS/Route53",
            MetricData=[
                {
                    "MetricName": "HealthCheckPercentageHealthy",
                    "Dimensions": [{"Name": "HealthCheckId", "Value": f"{SERVICE}-candidate-lb"}],
                    "Timestamp": now,
                    "Value": 0.0 if count > 0 else 100.0,
                }
            ],
        )

    def _loop(self) -> None:
        while True:
            try:
                self.put()
            except Exception as err:
                self.errors.append(f"{type(err).__name__}: {str(err)[:200]}")
            if self._stop.wait(self.every):
                return

    def start(self) -> CloudWatchFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def fan_out(*observers: Callable[[SessionRecord], None]) -> Callable[[SessionRecord], None]:
    """One observer that tells every given observer about each session."""

    def observe(record: SessionRecord) -> None:
        for observer in observers:
            with contextlib.suppress(Exception):
                observer(record)

    return observe


def unhealthy_candidates(load_balancers: Iterable[Any]) -> float:
    """Candidate hosts failing health checks across the load balancers (each exports one per colour)."""
    total = 0.0
    for balancer in load_balancers:
        for colour, failures in balancer.failures.items():
            if track_of(colour) == "candidate" and failures >= balancer.unhealthy_after:
                total += 1
    return total
