"""TrafficSplit: the Gateway API HTTPRoute, its weights, the beta cohort rule, and the router registry."""

from __future__ import annotations

import json

import pytest
from infra_helpers import rollout, settings
from pulumi_render import deploy

from infra import naming
from infra.traffic import ROUTERS, Router, router_for
from rollout_policies.errors import UserError

SERVICE = "markethub-mobile"


def _rules(deployed):
    return deployed.one("HTTPRoute", SERVICE)["spec"]["rules"]


def _weights(rule):
    return {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}


def test_weighted_rule_carries_the_rollout_weights(plan):
    rules = _rules(deploy(settings(state=rollout("limited", 1, 5)), plan))
    assert _weights(rules[1]) == {f"{SERVICE}-blue": 95, f"{SERVICE}-green": 5}


def test_both_backends_stay_listed_at_zero_weight(plan):
    rules = _rules(deploy(settings(state=rollout("beta", 0, 0)), plan))
    assert _weights(rules[1]) == {f"{SERVICE}-blue": 100, f"{SERVICE}-green": 0}


def test_the_beta_cohort_goes_to_the_candidate_whatever_the_weights(plan):
    rules = _rules(deploy(settings(state=rollout("beta", 0, 0)), plan))
    cohort = rules[0]
    assert cohort["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-markethub-cohort", "value": "beta"}
    ]
    assert _weights(cohort) == {f"{SERVICE}-green": 1}


def test_the_cohort_follows_the_candidate_colour(plan):
    rules = _rules(deploy(settings(state=rollout("beta", 0, 0, candidate="blue")), plan))
    assert list(_weights(rules[0])) == [f"{SERVICE}-blue"]


def test_the_cohort_header_is_configurable(plan):
    custom = settings(cohortHeader="X-Beta-Tester", cohortValue="yes")
    header = _rules(deploy(custom, plan))[0]["matches"][0]["headers"][0]
    assert (header["name"], header["value"]) == ("X-Beta-Tester", "yes")


def test_a_header_name_that_http_forbids_is_refused():
    with pytest.raises(UserError, match="cohortHeader"):
        settings(cohortHeader="x cohort")


def test_the_route_attaches_to_the_configured_gateway(plan):
    custom = settings(
        gateway={"name": "edge", "namespace": "infra", "sectionName": "https"}, hostnames=["m.example"]
    )
    route = deploy(custom, plan).one("HTTPRoute", SERVICE)
    assert route["spec"]["parentRefs"] == [{"name": "edge", "namespace": "infra", "sectionName": "https"}]
    assert route["spec"]["hostnames"] == ["m.example"]


def test_the_route_is_annotated_with_stage_step_and_weights_for_the_policy_pack(plan):
    annotations = deploy(settings(state=rollout("limited", 2, 10)), plan).one("HTTPRoute", SERVICE)[
        "metadata"
    ]["annotations"]
    assert annotations[naming.ANN_STAGE] == "limited"
    assert annotations[naming.ANN_STEP] == "2"
    assert json.loads(annotations[naming.ANN_WEIGHTS]) == {"blue": 90, "green": 10}
    assert annotations[naming.ANN_CANDIDATE] == "green"


def test_gateway_api_is_a_registered_router():
    assert router_for("gateway-api").name == "gateway-api"
    assert "gateway-api" in ROUTERS


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_registered_router_is_a_router_under_its_own_name(name):
    router = router_for(name)

    assert isinstance(router, Router)
    assert router.name == name


def test_the_router_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        ROUTERS["istio"] = ROUTERS["gateway-api"]  # type: ignore[index]


def test_an_unknown_router_is_refused_not_defaulted():
    with pytest.raises(UserError, match="unknown router 'istio'"):
        router_for("istio")


@pytest.mark.parametrize(("stage", "green"), [("beta", 0), ("limited", 0), ("majority", 0)])
def test_a_rolled_back_stack_has_no_cohort_rule(plan, stage, green):
    rules = _rules(deploy(settings(state={**rollout(stage, 0, green), "rolledBack": True}), plan))
    assert [rule["matches"] for rule in rules] == [[{"path": {"type": "PathPrefix", "value": "/"}}]]
    assert _weights(rules[0]) == {f"{SERVICE}-blue": 100, f"{SERVICE}-green": 0}


def test_the_route_says_whether_it_is_rolled_back(plan):
    live = deploy(settings(state=rollout("beta", 0, 0)), plan).one("HTTPRoute", SERVICE)
    rolled = deploy(settings(state={**rollout("beta", 0, 0), "rolledBack": True}), plan).one(
        "HTTPRoute", SERVICE
    )
    key = naming.ANN_ROLLED_BACK
    assert (live["metadata"]["annotations"][key], rolled["metadata"]["annotations"][key]) == ("false", "true")
