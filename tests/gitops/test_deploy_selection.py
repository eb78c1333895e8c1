"""Which stacks `rollout deploy preview|up` touches: production stacks the change reaches, never the
local environment's."""

from __future__ import annotations

from rollout_policies.gitops.deploy import select_stacks

STACKS = {
    "prod-us-east-1": "production",
    "prod-us-west-2": "production",
    "local-us-east-1": "local",
    "local-us-west-2": "local",
}


def test_a_stack_config_change_deploys_that_stack_only() -> None:
    selection = select_stacks(["Pulumi.prod-us-east-1.yaml", "README.md"], STACKS)
    assert selection.stacks == ("prod-us-east-1",)
    assert selection.skipped == ()


def test_a_program_change_deploys_every_production_stack_and_skips_the_local_ones() -> None:
    selection = select_stacks(["infra/traffic/gateway.py"], STACKS)
    assert selection.stacks == ("prod-us-east-1", "prod-us-west-2")
    assert [stack for stack, _ in selection.skipped] == ["local-us-east-1", "local-us-west-2"]


def test_a_local_stack_config_change_deploys_nothing() -> None:
    selection = select_stacks(["Pulumi.local-us-west-2.yaml"], STACKS)
    assert selection.stacks == ()
    assert selection.skipped[0][0] == "local-us-west-2"


def test_policy_pack_and_plan_changes_reach_every_production_stack() -> None:
    for path in ("policy/__main__.py", "rollout_policies/plans/markethub-mobile.yaml", "Pulumi.yaml"):
        assert select_stacks([path], STACKS).stacks == ("prod-us-east-1", "prod-us-west-2")


def test_a_repository_that_deploys_local_stacks_skips_the_production_ones() -> None:
    """The dress rehearsal's replica (ROLLOUT_ENVIRONMENT=local): one environment, never two."""
    selection = select_stacks(["infra/traffic/gateway.py"], STACKS, target="local")
    assert selection.stacks == ("local-us-east-1", "local-us-west-2")
    assert selection.skipped == (
        ("prod-us-east-1", "environment production: this repository deploys local stacks"),
        ("prod-us-west-2", "environment production: this repository deploys local stacks"),
    )
