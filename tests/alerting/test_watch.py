"""``rollout watch`` against a real Prometheus scraping the traffic simulator (plan windows compressed 60x:
crash 5s, API errors 2s, load balancer 1s, database immediately; the real windows take minutes).

Crash rate comes from the simulator's crash reporter API and load-balancer failures from CloudWatch
on a moto server (AWS cannot be reached here), each read by the watch's own provider, as in production.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devenv.services import MotoServer, Prometheus
from rollout_policies.alerting import GitRollback, TriggerWatch, WatchTick
from rollout_policies.core import TriggerStatus
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.plan.model import Plan
from rollout_policies.providers.settings import ProviderSettings
from simulator.harness import STACK, GitRemote, compressed
from simulator.simulation import Simulation

pytestmark = pytest.mark.services


@pytest.fixture
def scraped(
    prometheus_factory: Callable[..., Prometheus], moto_server: MotoServer
) -> Iterator[tuple[Simulation, Prometheus]]:
    moto_server.reset()  # another test's load balancer must not answer for this one
    with Simulation(
        sessions_per_second=20, seed=7, cloudwatch=moto_server.client("cloudwatch")
    ) as simulation:
        prometheus = prometheus_factory(simulation.targets, [])
        yield simulation, prometheus
        prometheus.stop()


@pytest.fixture
def providers(
    scraped: tuple[Simulation, Prometheus], moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The ``ROLLOUT_*`` variables `rollout watch` reads for the crash reporter and CloudWatch."""
    simulation, _ = scraped
    variables = {
        "ROLLOUT_JSON_BASE_URLS": f"crash_reporter={simulation.crash_reporter.url}",
        "ROLLOUT_CLOUDWATCH_ENDPOINT_URL": moto_server.endpoint_url,
        "AWS_REGION": moto_server.credentials["region_name"],
        "AWS_ACCESS_KEY_ID": moto_server.credentials["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": moto_server.credentials["aws_secret_access_key"],
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    yield variables


def _watch(plan: Plan, remote: GitRemote, tmp_path: Path, prometheus: Prometheus) -> TriggerWatch:
    clone = remote.clone(tmp_path / "watch-clone", "watch")
    ops = GitOps(repo=GitRepo(clone), plan=plan, actor="rollout-watch@test")
    return TriggerWatch(
        plan,
        prometheus.url,
        (STACK,),
        GitRollback(ops),
        step=timedelta(seconds=1),
        settings=ProviderSettings.from_env(),
    )


def _until_rollback(watch: TriggerWatch, ticks: int) -> list[WatchTick]:
    stop = threading.Event()

    def emit(tick: WatchTick) -> None:
        if tick.outcome is not None:
            stop.set()

    return watch.run(stop=stop, ticks=ticks, emit=emit)


def _wait_for_series(prometheus: Prometheus, watch: TriggerWatch, timeout: float = 40.0) -> None:
    """Until every trigger query answers (rates need two scrapes with traffic)."""
    from datetime import UTC, datetime

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = watch.measure(datetime.now(UTC))
        if all(r.status is not TriggerStatus.UNKNOWN for r in results):
            return
        time.sleep(0.5)
    raise TimeoutError(f"trigger queries still without data: {[r.reason for r in results]}")


def test_with_no_fault_every_trigger_is_clear_and_nothing_rolls_back(
    plan: Plan,
    remote: GitRemote,
    tmp_path: Path,
    scraped: tuple[Simulation, Prometheus],
    providers: dict[str, str],
) -> None:
    _, prometheus = scraped
    watch = _watch(compressed(plan, 60), remote, tmp_path, prometheus)
    _wait_for_series(prometheus, watch)
    ticks = _until_rollback(watch, ticks=8)
    assert [t.fired for t in ticks] == [()] * 8
    assert {r.id: r.status for r in ticks[-1].results} == {
        "crash-rate": TriggerStatus.CLEAR,
        "api-error-rate": TriggerStatus.CLEAR,
        "load-balancer-failures": TriggerStatus.CLEAR,
        "database-connection-loss": TriggerStatus.CLEAR,
    }
    assert remote.commits_since_seed() == []


@pytest.mark.parametrize(
    ("trigger", "fault"),
    [
        ("database-connection-loss", {"db_down": True}),
        ("api-error-rate", {"error_rate": 0.5}),
        ("crash-rate", {"crash_rate": 0.5}),
        ("load-balancer-failures", {"latency_ms": 1500.0}),
    ],
)
def test_a_fault_in_green_fires_its_trigger_and_rolls_back_once(
    plan: Plan,
    remote: GitRemote,
    tmp_path: Path,
    scraped: tuple[Simulation, Prometheus],
    providers: dict[str, str],
    trigger: str,
    fault: dict[str, Any],
) -> None:
    simulation, prometheus = scraped
    watch = _watch(compressed(plan, 60), remote, tmp_path, prometheus)
    _wait_for_series(prometheus, watch)
    simulation.inject("green", **fault)
    ticks = _until_rollback(watch, ticks=90)
    assert ticks[-1].outcome is not None, [r.reason for r in ticks[-1].results]
    assert trigger in ticks[-1].fired
    assert ticks[-1].outcome.result == "rolled-back"
    assert len(remote.commits_since_seed()) == 1
    assert "(rollout watch)" in remote.messages()[0]


def test_watch_once_on_the_command_line_rolls_back_a_database_loss_and_exits_3(
    remote: GitRemote, tmp_path: Path, scraped: tuple[Simulation, Prometheus]
) -> None:
    simulation, prometheus = scraped
    clone = remote.clone(tmp_path / "cli-clone", "cli")
    simulation.inject("green", db_down=True)
    deadline = time.monotonic() + 60
    query = {"query": 'min(markethub_db_connection_up{track="candidate"}) == 0'}
    while (
        time.monotonic() < deadline
        and not httpx.get(f"{prometheus.url}/api/v1/query", params=query).json()["data"]["result"]
    ):
        time.sleep(0.5)  # until Prometheus has scraped the lost connection
    done = subprocess.run(
        [sys.executable, "-m", "rollout_policies.cli.main", "watch", "--once", "--no-apply",
         "--prometheus", prometheus.url, "--repo", str(clone), "--stack", STACK],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "database-connection-loss: fired" in done.stdout
    assert "rolled-back: rolled back local-us" in done.stdout
    assert len(remote.commits_since_seed()) == 1
