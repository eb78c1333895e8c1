"""FeatureFlags: the stage's feature set as flagd flag definitions."""

from __future__ import annotations

import json

from infra_helpers import rollout, settings
from pulumi_render import deploy

from infra.flags import flag_key
from rollout_policies.plan.model import Feature, FeatureState

SERVICE = "markethub-mobile"


def _flags(plan, stage: str, green: int) -> dict:
    config_map = deploy(settings(state=rollout(stage, 0, green)), plan).one("ConfigMap", f"{SERVICE}-flags")
    return json.loads(config_map["data"]["flags.json"])


def test_social_sharing_is_limited_in_beta(plan):
    assert _flags(plan, "beta", 0)["flags"]["social-sharing"]["defaultVariant"] == "limited"


def test_social_sharing_is_enabled_from_the_medium_stage(plan):
    assert _flags(plan, "medium", 30)["flags"]["social-sharing"]["defaultVariant"] == "enabled"


def test_every_flag_offers_all_plan_states_as_variants(plan):
    flag = _flags(plan, "limited", 2)["flags"]["offline-mode"]
    assert flag["state"] == "ENABLED"
    assert flag["variants"] == {"enabled": "enabled", "limited": "limited", "disabled": "disabled"}


def test_definitions_name_the_flagd_schema_and_the_flag_set(plan):
    document = _flags(plan, "limited", 2)
    assert document["$schema"] == "https://flagd.dev/schema/v0/flags.json"
    assert document["metadata"] == {"flagSetId": "markethub-rollout"}


def test_a_rolled_back_stack_serves_the_plans_stable_flags(plan):
    names = sorted(plan.stage("beta").features)
    kept = names[0]
    plan = plan.model_copy(update={"stable_features": {kept: Feature(state=FeatureState.ENABLED)}})
    config_map = deploy(settings(state={**rollout("beta", 0, 0), "rolledBack": True}), plan).one(
        "ConfigMap", f"{SERVICE}-flags"
    )
    flags = json.loads(config_map["data"]["flags.json"])["flags"]
    stable = {key: flag["defaultVariant"] for key, flag in flags.items()}
    # The stable set's feature stays on; every other feature the stages name is off for everyone.
    assert stable == {flag_key(name): "enabled" if name == kept else "disabled" for name in names}
    assert any(
        _flags(plan, "beta", 0)["flags"][flag_key(name)]["defaultVariant"] != "disabled" for name in names[1:]
    )
