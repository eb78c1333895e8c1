"""Shared fixtures for tests that need real local services (Prometheus, Alertmanager, PostgreSQL, moto).

Each service runs once per test session on a free 127.0.0.1 port, from rig/devenv/services.py,
and is stopped by its pid when the session ends, also after failures. Factories start one more
instance per call (each in its own folder) and stop all of them at the end of the session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from devenv.services import HOST, Alertmanager, MotoServer, PostgreSQL, Prometheus, Service

# `local_env` / `local_env_info`: the two-region local environment, started once per session.
pytest_plugins = ["devenv.pytest_fixtures"]


class _Started:
    """Services a factory started, stopped in reverse order at the end of the session."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.lock = threading.Lock()

    def add(self, service: Service) -> Service:
        with self.lock:
            self.services.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()


@pytest.fixture(scope="session")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Prometheus]]:
    """``prometheus_factory(scrape_targets=[...], rule_files=[...], alertmanager_url=None, **kw)``: a
    started Prometheus (scrape and rule evaluation every 1s unless ``scrape_interval=`` says otherwise)."""
    started = _Started()

    def make(
        scrape_targets: Sequence[str] = (),
        rule_files: Sequence[Path | str] = (),
        alertmanager_url: str | None = None,
        **options: Any,
    ) -> Prometheus:
        workdir = tmp_path_factory.mktemp("prometheus")
        prometheus = Prometheus(workdir, scrape_targets, rule_files, alertmanager_url, **options)
        started.add(prometheus)
        return prometheus.start()

    yield make
    started.stop_all()


@pytest.fixture(scope="session")
def alertmanager_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Alertmanager]]:
    """``alertmanager_factory(config_yaml)``: a started Alertmanager with that configuration."""
    started = _Started()

    def make(config_yaml: str, **options: Any) -> Alertmanager:
        alertmanager = Alertmanager(tmp_path_factory.mktemp("alertmanager"), config_yaml, **options)
        started.add(alertmanager)
        return alertmanager.start()

    yield make
    started.stop_all()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    """One PostgreSQL for the session; ``.dsn`` is the superuser's DSN. Create your own database or
    tables with unique names, since other tests share the server."""
    with PostgreSQL(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the session; ``.endpoint_url``, ``.credentials`` and ``.client(service)``."""
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


class Exporter:
    """A /metrics endpoint (prometheus_client in a thread on 127.0.0.1) serving gauges set by the test."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.gauges: dict[str, Gauge] = {}
        self.server, self.thread = start_http_server(0, addr=HOST, registry=self.registry)
        self.port: int = self.server.server_address[1]
        self.stopped = False

    @property
    def target(self) -> str:
        """The ``host:port`` Prometheus scrapes."""
        return f"{HOST}:{self.port}"

    def set(self, name: str, value: float, **labels: str) -> None:
        gauge = self.gauges.get(name)
        if gauge is None:
            gauge = Gauge(name, f"test gauge {name}", sorted(labels), registry=self.registry)
            self.gauges[name] = gauge
        (gauge.labels(**labels) if labels else gauge).set(value)

    def stop(self) -> None:
        """Stop serving (Prometheus then marks this target's series stale)."""
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def exporter_factory() -> Iterator[Callable[[], Exporter]]:
    """``exporter_factory()``: a new metrics exporter; ``.set(name, value, **labels)``, ``.target``."""
    exporters: list[Exporter] = []

    def make() -> Exporter:
        exporter = Exporter()
        exporters.append(exporter)
        return exporter

    yield make
    for exporter in exporters:
        exporter.stop()
