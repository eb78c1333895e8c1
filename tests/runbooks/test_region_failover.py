"""The region failover drill: Route 53 failover records on a moto server, HTTP probes of stand-in endpoints.

moto stands in for Route 53 (the only AWS stand-in allowed here). The regions' endpoints are two
loopback HTTP servers (``devenv.health_standin``), because no pod really serves on kwok's fake nodes. The
Kubernetes reads sit behind the drill's ``Workloads`` and ``LiveRollouts`` seams: recorded Deployment
statuses, and each region's HTTPRoute and flags ConfigMap as the Pulumi program renders them for a
stage step (``infra.traffic``, ``infra.flags``); the e2e test reads real objects from the local clusters.
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

from infra.flags import FlagsArgs, flag_definitions
from infra.traffic.gateway_api import GatewayApiRouter
from infra.traffic.split import TrafficSplitArgs, route_spec
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import Feature, FeatureState, Plan
from rollout_policies.state import Colour, Release, RolloutState
from runbooks.region_failover import (
    Bounds,
    DeploymentStatus,
    FailoverDns,
    FailoverDrill,
    ServedRollout,
    capacity_problems,
    ensure_failover_records,
    served_from_objects,
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
SERVICE = "markethub-mobile"
PACKAGED = load_plan(DEFAULT_PLAN)


def served_at(stage_id: str, step: int, *, cohort_value: str = "beta", features: Any = None) -> ServedRollout:
    """What a region serves at a step of the packaged plan: its HTTPRoute and flags document as the
    Pulumi program renders them (infra.traffic, infra.flags)."""
    stage = PACKAGED.stage(stage_id)
    weight = stage.steps[step].weight
    moment = datetime(2026, 11, 20, 9, tzinfo=UTC)
    state = RolloutState(
        stage=stage_id,
        step=step,
        stable=Release(colour=Colour.BLUE, version="4.12.0"),
        candidate=Release(colour=Colour.GREEN, version="5.0.0"),
        weights={Colour.BLUE: 100 - weight, Colour.GREEN: weight},
        stageStartedAt=moment,
        stepStartedAt=moment,
    )
    args = TrafficSplitArgs(
        SERVICE, "markethub", 8080, state, "plan.yaml", "x-markethub-cohort", cohort_value
    )
    (route,) = GatewayApiRouter().manifests(route_spec(args))
    flags = flag_definitions(features if features is not None else FlagsArgs(SERVICE, "m", stage).features)
    return served_from_objects(route, flags, SERVICE)


@dataclass
class RecordedLive:
    """The live-objects seam: what each region serves."""

    by_region: dict[str, ServedRollout]

    def served(self, region: str) -> ServedRollout:
        return self.by_region[region]


def alike(stage_id: str = "limited", step: int = 2) -> RecordedLive:
    return RecordedLive({PRIMARY: served_at(stage_id, step), SECONDARY: served_at(stage_id, step)})


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

    def make(workloads: Any = HEALTHY, live: Any = None, **kwargs: Any) -> FailoverDrill:
        target = regions.target(tmp_path, bucket)
        ensure_failover_records(route53, target, PRIMARY)
        return FailoverDrill(
            plan=plan,
            target=target,
            route53=route53,
            s3=s3,
            workloads=workloads,
            http=http,
            live=live or alike(),
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
        "preflight-regions-agree",
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


@pytest.mark.parametrize(
    ("stage_id", "step", "weight"), [("limited", 2, 10), ("medium", 0, 30), ("majority", 0, 50)]
)
def test_the_drill_passes_while_traffic_is_split_and_a_fault_mid_drill_ends_on_the_primary(
    stage_id: str,
    step: int,
    weight: int,
    make_drill: Callable[..., FailoverDrill],
    regions: Regions,
    route53: Any,
    backed_up: None,
) -> None:
    live = alike(stage_id, step)

    report = make_drill(live=live).run(execute=True)

    assert report.verdict is Verdict.PASSED, report.to_markdown()
    agree = report.step("preflight-regions-agree")
    assert f"blue {100 - weight}% / green {weight}%" in agree.detail
    assert "x-markethub-cohort=beta -> markethub-mobile-green" in agree.detail
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}

    def fault(point: str) -> None:
        if point == "verify-secondary-serves":  # mid-drill: the secondary holds the traffic
            raise RuntimeError(f"injected at {point}")

    faulted = make_drill(live=live, fault=fault).run(execute=True)

    assert faulted.verdict is Verdict.FAILED
    assert faulted.step("automatic-failback").status is StepStatus.PASSED
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}
    assert FailoverDns(route53, regions.zone, regions.record).answer() == PRIMARY


def test_regions_serving_different_weights_stop_the_drill_naming_them(
    make_drill: Callable[..., FailoverDrill], regions: Regions, route53: Any, backed_up: None
) -> None:
    live = RecordedLive({PRIMARY: served_at("medium", 0), SECONDARY: served_at("limited", 2)})

    report = make_drill(live=live).run(execute=True)

    step = report.step("preflight-regions-agree")
    assert step.status is StepStatus.FAILED
    assert "weights: us-east-1 serves blue 70% / green 30%, us-west-2 blue 90% / green 10%" in step.detail
    assert "dns-failover" not in [s.name for s in report.steps]
    assert roles(route53, regions) == {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


def test_regions_with_different_flags_stop_the_drill_naming_the_flag(
    make_drill: Callable[..., FailoverDrill], backed_up: None
) -> None:
    features = dict(PACKAGED.stage("medium").features)
    name = sorted(features)[0]
    other = next(state for state in FeatureState if state is not features[name].state)
    flipped = {**features, name: Feature(state=other)}
    live = RecordedLive(
        {PRIMARY: served_at("medium", 0), SECONDARY: served_at("medium", 0, features=flipped)}
    )

    report = make_drill(live=live).run(execute=True)

    detail = report.step("preflight-regions-agree").detail
    assert report.step("preflight-regions-agree").status is StepStatus.FAILED
    assert f"flags: {name.replace('_', '-')} " in detail
    assert "weights" not in detail


def test_regions_with_different_cohort_rules_stop_the_drill(
    make_drill: Callable[..., FailoverDrill], backed_up: None
) -> None:
    live = RecordedLive(
        {PRIMARY: served_at("medium", 0), SECONDARY: served_at("medium", 0, cohort_value="vip")}
    )

    report = make_drill(live=live).run(execute=True)

    detail = report.step("preflight-regions-agree").detail
    assert "cohort rule: us-east-1 has x-markethub-cohort=beta -> markethub-mobile-green, " in detail
    assert "us-west-2 x-markethub-cohort=vip -> markethub-mobile-green" in detail


def test_a_region_without_a_route_is_not_known_to_agree(
    make_drill: Callable[..., FailoverDrill], backed_up: None
) -> None:
    missing = served_from_objects(None, None, SERVICE)
    live = RecordedLive({PRIMARY: served_at("medium", 0), SECONDARY: missing})

    report = make_drill(live=live).run(execute=True)

    detail = report.step("preflight-regions-agree").detail
    assert "us-west-2 has no HTTPRoute weighing blue and green" in detail
    assert "us-west-2 has no feature flags ConfigMap" in detail


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


def test_the_drill_reads_the_flags_config_map_by_the_programs_names() -> None:
    from infra import flags
    from runbooks import region_failover

    assert flags.config_map_name(SERVICE) == SERVICE + region_failover.FLAGS_CONFIG_MAP_SUFFIX
    assert flags.FLAGS_FILE == region_failover.FLAGS_FILE
