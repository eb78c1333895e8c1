"""FeatureFlags: the stage's feature set as flagd flag definitions."""

from __future__ import annotations

import json

from infra_helpers import deploy, rollout, settings

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
