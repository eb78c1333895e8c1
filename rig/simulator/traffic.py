"""Simulated users split between blue and green by the live traffic weights; a load balancer's health
checks, published to CloudWatch as a cloud load balancer does.

Weights come from a ``WeightSource``: ``HTTPRouteWeights`` reads the service's HTTPRoute from the
API server (the weighted rule, as ``infra/traffic`` renders it), ``FixedSplit`` is a constant split
for when no route exists. Every loop here is bounded: it stops on its event or after its count.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from prometheus_client import CollectorRegistry, Counter

from simulator.service import SERVICE

# A session is a shopper's visit: browse, then maybe search, add to cart, check out.
SESSION = (
    ("/browse", "GET", 1.0),
    ("/search", "GET", 0.8),
    ("/cart", "POST", 0.5),
    ("/checkout", "POST", 0.3),
)


class WeightSource(Protocol):
    """Percent of traffic per colour (``{"blue": 98, "green": 2}``)."""

    def weights(self) -> Mapping[str, float]: ...


@dataclass(frozen=True)
class FixedSplit:
    blue: float = 50.0
    green: float = 50.0

    def weights(self) -> Mapping[str, float]:
        return {"blue": self.blue, "green": self.green}


@dataclass
class HTTPRouteWeights:
    """The weighted rule of the HTTPRoute ``name`` in ``namespace``, read through the kubernetes client.

    When the route cannot be read the last weights read stay in force (or ``fallback`` before any),
    as a load balancer keeps its last configuration when its control plane is away.
    """

    kubeconfig: str
    namespace: str
    name: str = SERVICE
    fallback: FixedSplit = field(default_factory=lambda: FixedSplit(100.0, 0.0))
    refresh_seconds: float = 1.0

    def __post_init__(self) -> None:
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=self.kubeconfig)
        self._api = client.CustomObjectsApi(api_client)
        self._last: Mapping[str, float] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def read(self) -> Mapping[str, float] | None:
        route = self._api.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", self.name, _request_timeout=5
        )
        for rule in route.get("spec", {}).get("rules", []):
            if any(match.get("headers") for match in rule.get("matches", [])):
                continue  # the beta-cohort rule
            weights: dict[str, float] = {}
            for ref in rule.get("backendRefs", []):
                colour = str(ref.get("name", "")).rsplit("-", 1)[-1]
                weights[colour] = weights.get(colour, 0.0) + float(ref.get("weight", 1))
            return weights
        return None

    def weights(self) -> Mapping[str, float]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.refresh_seconds:
                self._read_at = time.monotonic()
                # API server away: keep the last configuration.
                with contextlib.suppress(Exception):
                    self._last = self.read() or self._last
            return self._last or self.fallback.weights()


class Users:
    """``sessions_per_second`` shoppers, each sent to a colour drawn by the current weights."""

    def __init__(
        self,
        urls: Mapping[str, str],
        weights: WeightSource,
        *,
        sessions_per_second: float = 20.0,
        workers: int = 8,
        seed: int | None = None,
        timeout: float = 5.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.urls = dict(urls)
        self.weight_source = weights
        self.sessions_per_second = sessions_per_second
        self.workers = workers
        self.timeout = timeout
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.registry = registry or CollectorRegistry()
        self.sessions = Counter(
            "simulator_user_sessions",
            "Sessions users ran, by colour and outcome",
            ["colour", "outcome"],
            registry=self.registry,
        )

    def pick(self) -> str:
        weights = {c: w for c, w in self.weight_source.weights().items() if c in self.urls and w > 0}
        with self._lock:
            if not weights:
                return self._random.choice(sorted(self.urls))
            colours = sorted(weights)
            return self._random.choices(colours, [weights[c] for c in colours])[0]

    def session(self, http: httpx.Client) -> tuple[str, str]:
        colour = self.pick()
        base = self.urls[colour]
        for path, method, chance in SESSION:
            with self._lock:
                if self._random.random() >= chance:
                    break
            try:
                response = http.request(method, base + path)
            except httpx.HTTPError:
                return colour, "crashed"
            if response.status_code >= 500:
                return colour, "error"
        return colour, "ok"

    def _work(self, limit: int | None) -> None:
        interval = self.workers / self.sessions_per_second
        done = 0
        with httpx.Client(timeout=self.timeout) as http:
            next_at = time.monotonic()
            while not self.stop_event.is_set() and (limit is None or done < limit):
                colour, outcome = self.session(http)
                self.sessions.labels(colour, outcome).inc()
                done += 1
                next_at += interval
                self.stop_event.wait(max(0.0, next_at - time.monotonic()))

    def start(self, sessions_per_worker: int | None = None) -> Users:
        for number in range(self.workers):
            thread = threading.Thread(
                target=self._work, args=(sessions_per_worker,), name=f"sim-user-{number}", daemon=True
            )
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=self.timeout + 5)


def lb_dimensions(service: str, track: str) -> dict[str, str]:
    """The CloudWatch dimensions of a track's load balancer and target group (as the plan names them)."""
    return {"LoadBalancer": f"app/{service}/{track}", "TargetGroup": f"targetgroup/{service}-{track}"}


def health_check_id(service: str, track: str) -> str:
    """The Route 53 health check that watches a track's load balancer."""
    return f"{service}-{track}-lb"


class LoadBalancer:
    """Health-checks each version every ``interval`` seconds; a check slower than ``timeout`` fails.

    Like a cloud load balancer, it publishes to CloudWatch, not to Prometheus: after every round of
    checks, ``AWS/ApplicationELB`` ``UnHealthyHostCount`` (0 or 1 host per colour here, dimensions
    ``lb_dimensions``) and ``AWS/Route53`` ``HealthCheckPercentageHealthy`` (``health_check_id``),
    through ``cloudwatch`` (a boto3 client; moto's server in tests). Without one it only keeps
    ``unhealthy`` in memory.
    """

    def __init__(
        self,
        urls: Mapping[str, str],
        tracks: Mapping[str, str],
        *,
        interval: float = 1.0,
        timeout: float = 0.5,
        unhealthy_after: int = 2,
        cloudwatch: Any | None = None,
        service: str = SERVICE,
    ) -> None:
        self.urls = dict(urls)
        self.tracks = dict(tracks)
        self.interval = interval
        self.timeout = timeout
        self.unhealthy_after = unhealthy_after
        self.cloudwatch = cloudwatch
        self.service = service
        self.unhealthy = {colour: 0 for colour in self.urls}
        self.failures = {colour: 0 for colour in self.urls}
        self.publish_errors = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sim-lb", daemon=True)

    def check(self, http: httpx.Client) -> None:
        for colour, url in self.urls.items():
            try:
                healthy = http.get(f"{url}/healthz", timeout=self.timeout).status_code == 200
            except httpx.HTTPError:
                healthy = False
            self.failures[colour] = 0 if healthy else self.failures[colour] + 1
            self.unhealthy[colour] = 1 if self.failures[colour] >= self.unhealthy_after else 0
        self.publish()

    def publish(self) -> None:
        if self.cloudwatch is None:
            return
        for colour, track in self.tracks.items():
            down = self.unhealthy[colour]
            try:
                self.cloudwatch.put_metric_data(
                    Namespace="AWS/ApplicationELB",
                    MetricData=[
                        {
                            "MetricName": "UnHealthyHostCount",
                            "Dimensions": [
                                {"Name": k, "Value": v} for k, v in lb_dimensions(self.service, track).items()
                            ],
                            "Value": float(down),
                            "Unit": "Count",
                        }
                    ],
                )
                self.cloudwatch.put_metric_data(
                    Namespace="AWS/Route53",
                    MetricData=[
                        {
                            "MetricName": "HealthCheckPercentageHealthy",
                            "Dimensions": [
                                {"Name": "HealthCheckId", "Value": health_check_id(self.service, track)}
                            ],
                            "Value": 0.0 if down else 100.0,
                            "Unit": "Percent",
                        }
                    ],
                )
            except Exception:  # CloudWatch away: the next round publishes again, as AWS would retry
                self.publish_errors += 1

    def _loop(self) -> None:
        with httpx.Client() as http:
            while not self.stop_event.is_set():
                self.check(http)
                self.stop_event.wait(self.interval)

    def start(self) -> LoadBalancer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=self.timeout * len(self.urls) + self.interval + 5)
