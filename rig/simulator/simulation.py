"""Blue, green, users, the load balancer and the crash reporter together: what tests, the benchmark
and the demo start."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

from simulator.crash_reporter import CrashReporter
from simulator.service import Faults, ServiceVersion
from simulator.traffic import FixedSplit, LoadBalancer, Users, WeightSource


class Simulation:
    """Blue (stable) and green (candidate) versions, ``Users`` split by ``weights``, a ``LoadBalancer``
    publishing to CloudWatch (``cloudwatch``: a boto3 client, moto's in tests), and the app's
    ``CrashReporter`` with its stability API.

    ``targets`` are the ``host:port`` endpoints Prometheus scrapes: the two versions' /metrics, as a
    real service's pods are scraped. Crash rate and load-balancer health are not in Prometheus: as
    in production they come from the crash reporter's API and from CloudWatch.
    """

    def __init__(
        self,
        weights: WeightSource | None = None,
        *,
        candidate: str = "green",
        sessions_per_second: float = 20.0,
        workers: int = 6,
        seed: int | None = None,
        health_interval: float = 1.0,
        health_timeout: float = 0.5,
        cloudwatch: Any | None = None,
    ) -> None:
        stable = "blue" if candidate == "green" else "green"
        tracks = {stable: "stable", candidate: "candidate"}
        self.crash_reporter = CrashReporter()
        self.versions = {
            colour: ServiceVersion(
                colour, track, seed=None if seed is None else seed + i, crash_reporter=self.crash_reporter
            )
            for i, (colour, track) in enumerate(sorted(tracks.items()))
        }
        urls = {colour: version.url for colour, version in self.versions.items()}
        self.users = Users(
            urls, weights or FixedSplit(), sessions_per_second=sessions_per_second, workers=workers, seed=seed
        )
        self.load_balancer = LoadBalancer(
            urls, tracks, interval=health_interval, timeout=health_timeout, cloudwatch=cloudwatch
        )
        self.started = False

    @property
    def targets(self) -> list[str]:
        return [v.target for v in self.versions.values()]

    def inject(self, colour: str, **faults: object) -> Faults:
        """Set faults on a version through its admin endpoint (as an operator or a drill would)."""
        response = httpx.post(f"{self.versions[colour].url}/admin/faults", json=faults, timeout=5.0)
        if response.status_code != 200:
            raise ValueError(f"faults refused: {response.json().get('error')}")
        return self.versions[colour].faults

    def clear(self, colour: str) -> Faults:
        return self.inject(colour, error_rate=0.0, latency_ms=0.0, crash_rate=0.0, db_down=False)

    def start(self) -> Self:
        self.crash_reporter.start()
        for version in self.versions.values():
            version.start()
        self.load_balancer.start()
        self.users.start()
        self.started = True
        return self

    def stop(self) -> None:
        # Users first, so no request is in flight to a stopped version.
        self.users.stop()
        self.load_balancer.stop()
        for version in self.versions.values():
            version.stop()
        self.crash_reporter.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
