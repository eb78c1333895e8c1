"""The region failover drill: Route 53 failover records on a moto server, HTTP probes of stand-in endpoints.

moto stands in for Route 53 (the only AWS stand-in allowed here). The regions' endpoints are two
loopback HTTP servers (``devenv.health_standin``), because no pod really serves on kwok's fake nodes. The
Kubernetes readiness check sits behind the drill's ``Workloads`` seam, given recorded Deployment
statuses here; the e2e test reads real Deployments from the local clusters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from drill_helpers import PRIMARY, SECONDARY, Regions, put_backup_sets

from rollout_policies.plan.model import Plan
from rollout_policies.state import CONFIG_KEY, Colour, Release, RolloutState
from runbooks.region_failover import (
    Bounds,
    DeploymentStatus,
    FailoverDns,
    FailoverDrill,
    capacity_problems,
    ensure_failover_records,
    rollouts_in_progress,
)
from runbooks.report import StepStatus, Verdict

pytestmark = pytest.mark.services


@dataclass
class RecordedWorkloads:
    """The Kubernetes seam with recorded Deployment statuses per region."""

    by_region: dict[str, tuple[DeploymentStatus, ...]]

    def deployments(self, region: str) -> tuple[DeploymentStatus, ...]:
        return self.by_region[region]


def deployments(available: int = 3, ready: bool = True) -> tuple[DeploymentStatus, ...]:
    return (
        DeploymentStatus("markethub-blue", 3, available, ready),
        DeploymentStatus("markethub-api", 2, 2, True),
    )


HEALTHY = RecordedWorkloads({PRIMARY: deployments(), SECONDARY: deployments()})


@pytest.fixture
def backed_up(s3: Any, bucket: str) -> None:
    put_backup_sets(s3, bucket, 10, 0.2)


@pytest.fixture
def http() -> Any:
    with httpx.Client(timeout=2.0) as client:
        yield client


@pytest.fixture
def make_drill(
    plan: Plan, regions: Regions, route53: Any, s3: Any, http: httpx.Client, tmp_path: Path, bucket: str
) -> Callable[..., FailoverDrill]:
    """The drill on the local endpoints, moto's Route 53 (records ensured) and S3; keyword arguments
    (``workloads``, ``fault``) override the drill's fields."""

    def make(workloads: Any = HEALTHY, **kwargs: Any) -> FailoverDrill:
        target = regions.target(tmp_path, bucket)
        ensure_failover_records(route53, target, PRIMARY)
        return FailoverDrill(
            plan=plan,
            target=target,
            route53=route53,
            s3=s3,
            workloads=workloads,
            http=http,
            bounds=Bounds(probe_attempts=6, probe_interval=0.01, switch_deadline=10.0),
            **kwargs,
        )

    return make


def roles(route53: Any, regions: Regions) -> dict[str, str]:
    return {r.region: r.role for r in FailoverDns(route53, regions.zone, regions.record).records().values()}


def test_the_drill_fails_over_verifies_and_fails_back(
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    report = make_drill().run(execute=True)

    assert report.verdict is Verdict.PASSED, report.to_markdown()
    assert [s.name for s in report.steps] == [
        "preflight-secondary-ready",
        "preflight-no-rollout-in-progress",
        "preflight-backup-fresh",
        "preflight-dns-on-primary",
        "dns-failover",
        "verify-secondary-serves",
        "dns-failback",
        "verify-primary-serves",
    ]
    assert report.objective("time to recovery (RTO)").met is True
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}
    assert regions.secondary.requests > 0  # the secondary really was probed while it held the traffic


def test_a_dry_run_changes_no_record(
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    report = make_drill().run(execute=False)

    assert report.verdict is Verdict.DRY_RUN
    assert report.step("dns-failover").status is StepStatus.PLANNED
    assert "Route 53" in report.step("dns-failover").changes
    assert regions.secondary.requests == 0
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


def test_a_secondary_that_is_not_ready_stops_the_drill_before_dns(
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    workloads = RecordedWorkloads({PRIMARY: deployments(), SECONDARY: deployments(available=1, ready=False)})

    report = make_drill(workloads=workloads).run(execute=True)

    assert report.verdict is Verdict.FAILED
    step = report.step("preflight-secondary-ready")
    assert step.status is StepStatus.FAILED
    assert "markethub-blue is not Available in the secondary" in step.detail
    assert "dns-failover" not in [s.name for s in report.steps]
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


def test_a_stale_backup_stops_the_drill(
    make_drill: Callable[..., FailoverDrill],
    s3: Any,
    bucket: str,
) -> None:
    put_backup_sets(s3, bucket, 10, 5)

    report = make_drill().run(execute=True)

    step = report.step("preflight-backup-fresh")
    assert step.status is StepStatus.FAILED
    assert "older than the RPO" in step.detail
    assert report.verdict is Verdict.FAILED
    assert "dns-failover" not in [s.name for s in report.steps]


def test_a_rollout_step_in_progress_stops_the_drill(
    make_drill: Callable[..., FailoverDrill],
    tmp_path: Path,
    backed_up: None,
) -> None:
    write_stack(tmp_path, "prod-us-east-1", candidate_weight=10)

    report = make_drill().run(execute=True)

    step = report.step("preflight-no-rollout-in-progress")
    assert step.status is StepStatus.FAILED
    assert "Pulumi.prod-us-east-1.yaml: stage limited step 1 at 10% candidate" in step.detail


@pytest.mark.parametrize("fault_at", ["dns-failover", "verify-secondary-serves", "dns-failback"])
def test_a_fault_after_the_switch_ends_with_dns_back_on_the_primary(
    fault_at: str,
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    def fault(point: str) -> None:
        if point == fault_at:
            raise RuntimeError(f"injected at {point}")

    report = make_drill(fault=fault).run(execute=True)

    assert report.step(fault_at).status is StepStatus.FAILED
    assert report.step("automatic-failback").status is StepStatus.PASSED
    assert report.verdict is Verdict.FAILED
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


def test_a_secondary_that_does_not_serve_fails_back_automatically(
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    regions.secondary.healthy = False

    report = make_drill().run(execute=True)

    verify = report.step("verify-secondary-serves")
    assert verify.status is StepStatus.FAILED
    assert "HTTP 503" in verify.detail
    assert report.step("automatic-failback").status is StepStatus.PASSED
    assert report.objective("time to recovery (RTO)").measured_seconds is None
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


def test_stay_leaves_traffic_on_the_secondary_only_when_asked(
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    report = make_drill().run(execute=True, stay=True)

    assert report.verdict is Verdict.PASSED
    assert roles(route53, regions) == {PRIMARY: "SECONDARY", SECONDARY: "PRIMARY"}
    assert any("--stay" in note for note in report.notes)


def test_a_primary_that_does_not_serve_stops_the_drill_in_preflight(
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    regions.primary.healthy = False

    report = make_drill().run(execute=True)

    assert report.step("preflight-dns-on-primary").status is StepStatus.FAILED
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


def test_capacity_is_the_primarys_available_replicas() -> None:
    primary = (DeploymentStatus("web", 6, 6, True),)
    secondary = (DeploymentStatus("web", 2, 2, True),)

    assert capacity_problems(primary, secondary) == [
        "web: the secondary has 2 available replicas, the primary's load needs 6"
    ]
    assert capacity_problems(primary, (DeploymentStatus("web", 6, 6, True),)) == []
    assert capacity_problems(primary, ()) == ["the secondary region runs no Deployments in the namespace"]


def test_a_finished_rollout_is_not_in_progress(tmp_path: Path) -> None:
    write_stack(tmp_path, "prod-us-east-1", candidate_weight=100)
    write_stack(tmp_path, "prod-us-west-2", candidate_weight=0)

    assert rollouts_in_progress(tmp_path) == []


def write_stack(folder: Path, stack: str, candidate_weight: int) -> None:
    moment = datetime(2026, 11, 20, 9, tzinfo=UTC)
    state = RolloutState(
        stage="limited",
        step=1,
        stable=Release(colour=Colour.BLUE, version="4.12.0"),
        candidate=Release(colour=Colour.GREEN, version="5.0.0"),
        weights={Colour.BLUE: 100 - candidate_weight, Colour.GREEN: candidate_weight},
        stageStartedAt=moment,
        stepStartedAt=moment,
    )
    from ruamel.yaml import YAML

    with (folder / f"Pulumi.{stack}.yaml").open("w") as handle:
        YAML().dump({"config": {CONFIG_KEY: state.to_config()}}, handle)
