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


def test_social_sharing_is_enabled_from_the_medium_stage_for_its_users(plan):
    flag = _flags(plan, "medium", 30)["flags"]["social-sharing"]
    assert flag["targeting"]["if"][2]["fractional"][1] == ["enabled", 30]


def _bucket_of(fractional: list, user: str) -> str:
    """flagd's fractional, as flagd evaluates it: the user's bucket in [0, 100) by the key, then the
    first variant whose running total of weights exceeds it (the hash is a stand-in: any fixed hash
    of the key shows the order argument)."""
    import hashlib

    assert fractional[0] == {"var": "targetingKey"}
    spot = int.from_bytes(hashlib.sha256(user.encode()).digest()[:4], "big") / 2**32 * 100
    total = 0
    for variant, weight in fractional[1:]:
        total += weight
        if spot < total:
            return variant
    raise AssertionError("weights do not cover [0, 100)")


def test_a_percentage_stage_serves_its_features_to_users_not_requests(plan):
    stable = plan.stable_feature_set()
    users = [f"user-{i}" for i in range(5000)]
    changed = [name for name, feature in plan.stage("limited").features.items() if stable[name] != feature]
    assert changed, "the limited stage changes no feature: nothing to split"
    key = flag_key(changed[0])
    served = []
    for weight in (2, 5, 10):
        flag = _flags(plan, "limited", weight)["flags"][key]
        assert flag["defaultVariant"] == stable[changed[0]].state.value  # no targeting key: stable
        cohort_rule, stage_state, split = flag["targeting"]["if"]
        assert cohort_rule == {"==": [{"var": "cohort"}, "beta"]}  # the beta cohort keeps them
        served.append({u for u in users if _bucket_of(split["fractional"], u) == stage_state})
    assert served[0] and served[0] <= served[1] <= served[2]  # 100% of candidate users stay
    assert abs(len(served[2]) / len(users) - 0.10) < 0.02
    # every feature the stage changes is split by the same key, so one user is on one side for all
    splits = {
        json.dumps(flag["targeting"]["if"][2]["fractional"][0])
        for flag in _flags(plan, "limited", 5)["flags"].values()
        if "targeting" in flag
    }
    assert splits == {json.dumps({"var": "targetingKey"})}


def test_a_feature_the_stage_does_not_change_has_no_targeting(plan):
    kept, feature = sorted(plan.stage("limited").features.items())[0]
    plan = plan.model_copy(update={"stable_features": {kept: feature}})
    flags = _flags(plan, "limited", 5)["flags"]
    assert "targeting" not in flags[flag_key(kept)]
    assert flags[flag_key(kept)]["defaultVariant"] == feature.state.value
    assert any("targeting" in flag for flag in flags.values())


def test_the_beta_cohort_stage_has_no_split(plan):
    assert not any("targeting" in flag for flag in _flags(plan, "beta", 0)["flags"].values())


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
