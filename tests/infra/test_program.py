"""The whole program: what a promotion changes, explicit names, reading the stack config and files."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from infra_helpers import rollout, settings
from pulumi_render import RecordingMocks, deploy

from infra.program import main, route_urn
from infra.settings import settings_from_stack_file, stack_file_config
from rollout_policies.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))


def _changed(before, after) -> set[str]:
    """The Kubernetes objects whose inputs differ, as ``Kind/name``: what ``preview --diff`` updates."""
    old, new = before.by_identity(), after.by_identity()
    assert old.keys() == new.keys(), "a promotion must not create or delete resources"
    return {
        f"{key[0].rsplit(':', 1)[1]}/{new[key]['metadata']['name']}" for key in new if old[key] != new[key]
    }


# A percentage stage's flags split its features by user at the step's weight (infra/flags.py), so a
# step or a weight change also rewrites the flags ConfigMap in place (flagd reloads it, no restart).
def test_a_step_within_a_stage_changes_only_the_http_route_and_the_flags_split(plan):
    before = deploy(settings(state=rollout("limited", 0, 2)), plan)
    after = deploy(settings(state=rollout("limited", 1, 5)), plan)
    assert _changed(before, after) == {"HTTPRoute/markethub-mobile", "ConfigMap/markethub-mobile-flags"}


def test_a_rollback_changes_only_the_http_route_and_the_flags_split(plan):
    before = deploy(settings(state=rollout("limited", 2, 10)), plan)
    after = deploy(settings(state=rollout("limited", 2, 0)), plan)
    assert _changed(before, after) == {"HTTPRoute/markethub-mobile", "ConfigMap/markethub-mobile-flags"}


def test_a_stage_promotion_updates_in_place_and_never_touches_a_deployment(plan):
    before = deploy(settings(state=rollout("beta", 0, 0), minReplicas=10), plan)
    after = deploy(settings(state=rollout("limited", 0, 2), minReplicas=10), plan)
    assert _changed(before, after) == {
        "HTTPRoute/markethub-mobile",
        "HorizontalPodAutoscaler/markethub-mobile-green",  # floor 1 -> 2 for the stage's 10%
        "ConfigMap/markethub-mobile-rollout-dashboard",  # the stage's thresholds
        "PrometheusRule/markethub-mobile-stage-alerts",  # the stage's alert thresholds
        "ConfigMap/markethub-mobile-flags",  # the features now split by user at 2%
    }


def test_a_stage_with_a_new_feature_set_also_updates_the_flags_in_place(plan):
    before = deploy(settings(state=rollout("limited", 2, 10), minReplicas=10), plan)
    after = deploy(settings(state=rollout("medium", 0, 30), minReplicas=10), plan)
    changed = _changed(before, after)
    assert "ConfigMap/markethub-mobile-flags" in changed
    assert not {name for name in changed if name.startswith("Deployment/")}


def test_every_kubernetes_object_is_named_explicitly(plan):
    deployed = deploy(settings(), plan)
    k8s = [r for r in deployed.resources if r.type.startswith("kubernetes:")]
    assert k8s and all(r.k8s_name for r in k8s)


def test_components_parent_their_children(plan):
    types = {r.type for r in deploy(settings(), plan).resources if r.type.startswith("markethub:")}
    assert types == {
        "markethub:infra:BlueGreenService",
        "markethub:infra:TrafficSplit",
        "markethub:infra:Autoscaling",
        "markethub:infra:FeatureFlags",
        "markethub:infra:RegionalFailover",
        "markethub:infra:RollbackAlerts",
        "markethub:infra:RolloutController",
        "markethub:infra:BackupSchedule",
        "markethub:infra:DrillSchedule",
    }


def test_a_stage_outside_the_plan_is_refused_naming_the_stack_file(plan):
    with pytest.raises(
        UserError,
        match=r"^Pulumi\.prod-us-east-1\.yaml: markethub-rollout:rollout\.stage: stage 'gamma' is not in ",
    ):
        deploy(settings(state=rollout("gamma", 0, 0)), plan)


def test_a_step_beyond_the_stage_is_refused(plan):
    with pytest.raises(UserError, match="stage medium has 1 step"):
        deploy(settings(state=rollout("medium", 3, 30)), plan)


def test_an_unknown_config_key_is_named():
    with pytest.raises(UserError, match="markethub-rollout:headrom: unknown key"):
        settings(headrom="2")


def test_weights_that_do_not_sum_to_100_are_refused_by_the_state_model():
    state = rollout("limited", 0, 2)
    state["weights"] = {"blue": 90, "green": 2}
    with pytest.raises(UserError, match=r"markethub-rollout:rollout: .*sum to 100"):
        settings(state=state)


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_shipped_stack_files_are_valid(path):
    assert settings_from_stack_file(path).rollout.stage


def test_prod_stacks_are_production_and_have_one_primary():
    roles = {p.name: settings_from_stack_file(p).region_role.value for p in STACK_FILES if "prod" in p.name}
    assert roles == {"Pulumi.prod-us-east-1.yaml": "primary", "Pulumi.prod-us-west-2.yaml": "secondary"}


def test_main_builds_the_shipped_stack_from_pulumi_config():
    """The entry point the CLI and the Automation API call, on the shipped plan and stack file."""
    raw = stack_file_config(ROOT / "Pulumi.prod-us-west-2.yaml")
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="markethub-rollout", stack="prod-us-west-2", preview=False)
    pulumi.runtime.set_all_config({f"markethub-rollout:{k}": v for k, v in raw.items()})
    try:

        @pulumi.runtime.test
        def program() -> None:
            main()

        program()
    finally:
        pulumi.runtime.set_all_config({})
    by_name = {
        (r.typ.rsplit(":", 1)[1], r.inputs["metadata"]["name"]): r.inputs for r in mocks.resources if r.inputs
    }
    route = by_name[("HTTPRoute", "markethub-mobile")]
    assert json.loads(route["metadata"]["annotations"]["rollout.markethub.io/weights"]) == {
        "blue": 100,
        "green": 0,
    }
    failover = by_name[("Service", "markethub-mobile-public")]
    assert failover["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/aws-failover"] == "SECONDARY"


def test_route_urn_names_the_traffic_route_for_a_targeted_update():
    assert route_urn("prod-us-east-1") == (
        "urn:pulumi:prod-us-east-1::markethub-rollout::markethub:infra:TrafficSplit"
        "$kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::markethub-mobile-traffic-httproute"
    )


def test_a_relative_plan_is_found_in_the_project_before_the_working_directory(tmp_path, monkeypatch):
    from infra.program import resolve_plan_path

    project = tmp_path / "clone"
    (project / "plans").mkdir(parents=True)
    (project / "plans" / "team.yaml").write_text("name: x\n")
    monkeypatch.chdir(tmp_path)  # an inline program runs in its host's directory, not the project's
    assert resolve_plan_path("plans/team.yaml", project) == project / "plans" / "team.yaml"
    assert resolve_plan_path("plans/team.yaml") == Path(__file__).resolve().parents[2] / "plans" / "team.yaml"
