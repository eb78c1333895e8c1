"""The policy pack: the pure checks directly, then the pulumi-policy wrappers on the program's output."""

from __future__ import annotations

from pathlib import Path

import pytest
from infra_helpers import rollout, settings
from pulumi_policy import PolicyResource, ResourceValidationArgs, StackValidationArgs
from pulumi_render import deploy

from infra import policies, policy_pack
from infra.policies import KubeObject

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- pure checks


def test_weights_summing_to_100_pass():
    assert policies.check_weights({"blue": 95, "green": 5}) == []


def test_weights_not_summing_to_100_are_a_violation():
    assert policies.check_weights({"blue": 90, "green": 5}) == [
        "weights sum to 95, not 100 (blue 90, green 5)"
    ]


def test_weights_must_name_both_colours():
    assert policies.check_weights({"blue": 100})[0].startswith("weights must name blue and green")


def test_a_weight_within_the_plans_step_passes(plan):
    assert policies.check_step(plan, "limited", 1, 5) == []


def test_a_weight_below_the_step_is_a_hold_or_rollback_and_passes(plan):
    assert policies.check_step(plan, "limited", 2, 0) == []


def test_a_weight_beyond_the_step_but_within_the_stage_exceeds_the_step(plan):
    assert policies.check_step(plan, "limited", 0, 5) == [
        "candidate weight 5% exceeds stage limited step 0, which allows 2%"
    ]


def test_beta_to_50_percent_skips_stages(plan):
    (problem,) = policies.check_step(plan, "beta", 0, 50)
    assert "is stage majority's weight, skipping limited, medium" in problem


def test_a_weight_of_the_next_stage_is_reported_as_a_skip_too(plan):
    (problem,) = policies.check_step(plan, "limited", 2, 30)
    assert "is stage medium's weight: promote one stage at a time" in problem


def test_a_step_the_stage_does_not_have_is_a_violation(plan):
    assert policies.check_step(plan, "medium", 1, 30) == [
        "stage medium has steps 0..0; step 1 skips beyond the plan"
    ]


def test_a_stage_outside_the_plan_is_a_violation(plan):
    assert policies.check_step(plan, "canary", 0, 1)[0].startswith("stage 'canary' is not in plan")


def _objects(deployed) -> list[KubeObject]:
    return [KubeObject(r.type, r.inputs) for r in deployed.resources if r.type.startswith("kubernetes:")]


def test_the_programs_deployments_all_have_an_hpa_and_a_pdb(plan):
    assert policies.check_protected(_objects(deploy(settings(), plan))) == []


def test_green_without_an_hpa_is_a_violation(plan):
    objects = [
        o for o in _objects(deploy(settings(), plan)) if not (o.type == policies.HPA and "green" in o.name)
    ]
    assert policies.check_protected(objects) == [
        "green Deployment markethub-mobile-green has no HorizontalPodAutoscaler"
    ]


def test_green_without_a_pdb_is_a_violation(plan):
    objects = [
        o for o in _objects(deploy(settings(), plan)) if not (o.type == policies.PDB and "green" in o.name)
    ]
    assert policies.check_protected(objects) == [
        "green Deployment markethub-mobile-green has no PodDisruptionBudget"
    ]


def test_a_production_stack_without_backups_is_a_violation(plan):
    objects = _objects(deploy(settings(backup={"enabled": False}), plan))
    assert policies.is_production(objects, "prod-us-east-1")
    assert len(policies.check_backups(objects, production=True)) == 3  # Velero, full, incremental


def test_a_local_stack_may_run_without_backups(plan):
    objects = _objects(deploy(settings("local", backup={"enabled": False}), plan))
    assert not policies.is_production(objects, "local")
    assert policies.check_backups(objects, production=False) == []


def test_exactly_one_primary_passes():
    assert policies.check_one_primary({"prod-us-east-1": "PRIMARY", "prod-us-west-2": "SECONDARY"}) == []


def test_two_primaries_are_a_violation():
    assert policies.check_one_primary({"prod-us-east-1": "PRIMARY", "prod-us-west-2": "PRIMARY"}) == [
        "2 PRIMARY regions (prod-us-east-1, prod-us-west-2): exactly one may be PRIMARY"
    ]


def test_no_primary_is_a_violation():
    assert "no PRIMARY region" in policies.check_one_primary({"a": "SECONDARY", "b": "SECONDARY"})[0]


def test_a_region_stack_has_exactly_one_failover_record(plan):
    objects = _objects(deploy(settings(), plan))
    assert policies.check_stack_role(objects) == []
    without = [o for o in objects if not o.name.endswith("-public")]
    assert policies.check_stack_role(without) == ["a region stack needs exactly one failover record, found 0"]


# ---------------------------------------------------------------- the pulumi-policy wrappers


def _violations(policy, args) -> list[str]:
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


def _route_args(deployed) -> ResourceValidationArgs:
    (route,) = [r for r in deployed.resources if r.type == policies.HTTP_ROUTE]
    return ResourceValidationArgs(route.type, route.inputs, f"urn:{route.name}", route.name, None, None)


def _stack_args(deployed) -> StackValidationArgs:
    resources = [
        PolicyResource(r.type, r.inputs, f"urn:{r.name}", r.name, None, None, None, [], {})
        for r in deployed.resources
        if r.type.startswith("kubernetes:")
    ]
    return StackValidationArgs(resources)


def test_the_pack_passes_the_shipped_stack_at_a_valid_step(plan):
    deployed = deploy(settings(state=rollout("limited", 1, 5)), plan)
    assert _violations(policy_pack.weights_policy(), _route_args(deployed)) == []
    assert _violations(policy_pack.step_policy(ROOT), _route_args(deployed)) == []
    for policy in (policy_pack.protection_policy(), policy_pack.backups_policy(lambda: "prod-us-east-1")):
        assert _violations(policy, _stack_args(deployed)) == []


def test_the_pack_rejects_a_stack_config_that_skips_from_beta_to_50_percent(plan):
    """Checked against the shipped plan file named by the route's annotation, as on a real preview."""
    deployed = deploy(settings(state=rollout("beta", 0, 50)), plan)
    (violation,) = _violations(policy_pack.step_policy(ROOT), _route_args(deployed))
    assert "skipping limited, medium" in violation


def test_the_pack_rejects_a_second_primary_region(plan):
    west = deploy(settings("prod-us-west-2", region="us-west-2", regionRole="primary"), plan)
    policy = policy_pack.primary_policy(ROOT, lambda: "prod-us-west-2")
    assert _violations(policy, _stack_args(west)) == [
        "2 PRIMARY regions (prod-us-east-1, prod-us-west-2): exactly one may be PRIMARY"
    ]


def test_the_pack_accepts_a_failover_that_swaps_the_roles(plan, tmp_path):
    for stack, role in (("prod-us-east-1", "secondary"), ("prod-us-west-2", "primary")):
        text = (
            (ROOT / f"Pulumi.{stack}.yaml").read_text().replace("regionRole: primary", f"regionRole: {role}")
        )
        (tmp_path / f"Pulumi.{stack}.yaml").write_text(
            text.replace("regionRole: secondary", f"regionRole: {role}")
        )
    west = deploy(settings("prod-us-west-2", region="us-west-2", regionRole="primary"), plan)
    assert (
        _violations(policy_pack.primary_policy(tmp_path, lambda: "prod-us-west-2"), _stack_args(west)) == []
    )


@pytest.mark.parametrize("green", [0, 2])
def test_the_weights_policy_checks_the_route_backends(plan, green):
    deployed = deploy(settings(state=rollout("limited", 0, green)), plan)
    args = _route_args(deployed)
    assert _violations(policy_pack.weights_policy(), args) == []
    args.props["spec"]["rules"][1]["backendRefs"][0]["weight"] = 99 - green
    assert any("sum to 99" in v for v in _violations(policy_pack.weights_policy(), args))
