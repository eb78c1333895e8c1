"""Window criteria from live data: "No critical issues for 48 hours" judged from a range query over the
window against Debian's Prometheus, whose history is backfilled with ``promtool tsdb
create-blocks-from openmetrics`` (a real 48-hour window cannot be waited for in a test)."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devenv.services import Prometheus
from rollout_policies.core.criteria import CriterionStatus, evaluate_criterion
from rollout_policies.core.measurement import Evidence
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Plan
from rollout_policies.providers import collect, collect_evidence, collect_windows
from rollout_policies.providers.settings import ProviderSettings

pytestmark = pytest.mark.services

NOW = datetime.now(UTC).replace(microsecond=0)
INCIDENT = NOW - timedelta(hours=60)  # a critical alert fired for 10 minutes, 60 hours ago


def _backfill(data: Path) -> None:
    """ALERTS as Prometheus's rule evaluation writes it: one critical alert firing for 10 minutes."""
    labels = 'alertname="ApiDown",alertstate="firing",service="markethub-mobile",severity="critical"'
    start = math.floor(INCIDENT.timestamp())
    lines = ["# TYPE ALERTS gauge"]
    lines += [f"ALERTS{{{labels}}} 1 {start + offset}" for offset in range(0, 600, 15)]
    source = data.parent / "alerts.om"
    source.write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def plan() -> Plan:
    return load_plan(DEFAULT_PLAN)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus-history")
    _backfill(workdir / "data")
    server = Prometheus(workdir).start()
    yield server
    server.stop()


def _criterion(plan: Plan):  # type: ignore[no-untyped-def]
    return next(c for c in plan.stage("limited").go if c.id == "limited-no-critical")


def _judge(plan: Plan, evidence: Evidence, now: datetime) -> tuple[CriterionStatus, str]:
    result = evaluate_criterion(
        _criterion(plan),
        no_go=False,
        gate_verdicts=(),
        metrics={m.id: m for m in plan.metrics},
        evidence=evidence,
        now=now,
        stage_started_at=now - timedelta(days=5),
    )
    return result.status, result.reason


def _settings(prometheus: Prometheus) -> ProviderSettings:
    return ProviderSettings(prometheus_url=prometheus.url)


def _wait_until_loaded(prometheus: Prometheus, plan: Plan) -> None:
    """Until the backfilled blocks answer queries (Prometheus loads them at start)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = collect_windows(plan, "limited", INCIDENT + timedelta(minutes=5), _settings(prometheus))
        if any(m.value for m in found):
            return
        time.sleep(0.5)
    raise TimeoutError("the backfilled ALERTS history did not load")


def test_a_clean_48_hours_meets_the_criterion_from_a_range_query(plan: Plan, prometheus: Prometheus) -> None:
    _wait_until_loaded(prometheus, plan)
    evidence = collect_evidence(plan, "limited", NOW, _settings(prometheus))
    status, reason = _judge(plan, evidence, NOW)
    assert status is CriterionStatus.MET, reason
    assert "for the whole 2d" in reason


def test_a_critical_alert_inside_the_window_fails_it(plan: Plan, prometheus: Prometheus) -> None:
    _wait_until_loaded(prometheus, plan)
    then = NOW - timedelta(hours=20)  # the window then..-48h holds the incident
    evidence = collect_evidence(plan, "limited", then, _settings(prometheus))
    status, reason = _judge(plan, evidence, then)
    assert status is CriterionStatus.NOT_MET, reason
    assert "critical_issues = 1" in reason


def test_one_instant_sample_cannot_meet_it(plan: Plan, prometheus: Prometheus) -> None:
    """What live collection gave before: one sample at now, which covers none of the 48 hours."""
    evidence = Evidence.of(collect(plan, "limited", NOW, _settings(prometheus)))
    status, reason = _judge(plan, evidence, NOW)
    assert status is CriterionStatus.UNKNOWN, reason


def test_without_a_prometheus_url_the_window_is_an_error_not_a_pass(plan: Plan) -> None:
    (measurement,) = collect_windows(plan, "limited", NOW, ProviderSettings())
    assert measurement.phase.value == "error"
    status, _ = _judge(plan, Evidence.of([measurement]), NOW)
    assert status is CriterionStatus.UNKNOWN
