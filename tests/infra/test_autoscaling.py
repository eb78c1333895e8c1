"""Autoscaling: one HPA per colour; the candidate's floor follows its stage's traffic share."""

from __future__ import annotations

import pytest
from infra_helpers import rollout, settings
from pulumi_render import deploy

from infra.autoscaling import candidate_min_replicas

SERVICE = "markethub-mobile"


def _floor(plan, stage: str, step: int, green: int, **raw) -> int:
    hpa = deploy(settings(state=rollout(stage, step, green), **raw), plan).one(
        "HorizontalPodAutoscaler", f"{SERVICE}-green"
    )
    return hpa["spec"]["minReplicas"]


def test_each_colour_has_an_hpa_targeting_its_deployment(plan):
    hpas = deploy(settings(), plan).of_kind("HorizontalPodAutoscaler")
    assert {h["metadata"]["name"]: h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {
        f"{SERVICE}-blue": f"{SERVICE}-blue",
        f"{SERVICE}-green": f"{SERVICE}-green",
    }


def test_hpa_scales_on_cpu_and_a_custom_metric(plan):
    hpa = deploy(settings(customMetric={"name": "rps", "averageValue": "80"}), plan).one(
        "HorizontalPodAutoscaler", f"{SERVICE}-green"
    )
    cpu, custom = hpa["spec"]["metrics"]
    assert cpu["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert custom["pods"] == {
        "metric": {"name": "rps"},
        "target": {"type": "AverageValue", "averageValue": "80"},
    }


@pytest.mark.parametrize(("step", "green"), [(0, 2), (1, 5), (2, 10)])
def test_candidate_floor_is_the_same_at_every_step_of_a_stage(plan, step, green):
    # 10 replicas carry all traffic; the stage's largest step is 10%; x 2.0 headroom = 2 at every step
    assert _floor(plan, "limited", step, green, minReplicas=10) == 2


@pytest.mark.parametrize(
    ("stage", "green", "expected"),
    [("beta", 0, 1), ("limited", 2, 2), ("medium", 30, 6), ("majority", 50, 10), ("full", 100, 20)],
)
def test_candidate_floor_rises_stage_by_stage(plan, stage, green, expected):
    assert _floor(plan, stage, 0, green, minReplicas=10, maxReplicas=30) == expected


def test_headroom_factor_scales_the_candidate_floor(plan):
    assert _floor(plan, "medium", 0, 30, minReplicas=10, headroom=3.0) == 9


def test_candidate_floor_never_exceeds_max_replicas(plan):
    assert _floor(plan, "full", 0, 100, minReplicas=10, maxReplicas=12) == 12


def test_stable_colour_keeps_the_full_traffic_floor_for_an_instant_rollback(plan):
    hpa = deploy(settings(state=rollout("majority", 0, 50), minReplicas=7), plan).one(
        "HorizontalPodAutoscaler", f"{SERVICE}-blue"
    )
    assert hpa["spec"]["minReplicas"] == 7


def test_a_weight_above_the_stage_raises_the_floor_with_it(plan):
    limited = plan.stage("limited")
    assert (
        candidate_min_replicas(limited, candidate_weight=40, full_replicas=10, headroom=2.0, max_replicas=50)
        == 8
    )
