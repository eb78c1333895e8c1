"""Cohort selection and sticky assignment (pure): rollout_policies/core/audience.py."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from rollout_policies.core.audience import (
    BUCKETS,
    Candidate,
    CohortError,
    bucket,
    on_candidate,
    platform_quotas,
    pseudonym,
    rules_from,
    select_cohort,
)
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan

PLAN = load_plan(DEFAULT_PLAN)
BETA = PLAN.stage("beta").audience
STEPS = [step.weight for step in PLAN.stage("limited").steps]  # the plan's 2 -> 5 -> 10


def users(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [f"user-{rng.getrandbits(48):012x}" for _ in range(count)]


def test_the_limited_stage_steps_are_the_seeds_2_5_10():
    assert STEPS == [2, 5, 10]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_candidate_user_stays_on_the_candidate_as_the_weight_grows_and_all_return_at_zero(seed):
    salt = f"release-{seed}"
    population = users(seed, 20_000)
    on = [{u for u in population if on_candidate(u, salt, w)} for w in STEPS]

    for smaller, larger in pairwise(on):
        assert smaller, "a step with no candidate user proves nothing"
        assert smaller <= larger  # 100% of the candidate users stay
    for weight, chosen in zip(STEPS, on, strict=True):
        assert abs(len(chosen) / len(population) - weight / 100) < 0.01
    assert not any(on_candidate(u, salt, 0) for u in population)  # rollback: 100% back
    assert all(on_candidate(u, salt, 100) for u in population)


def test_a_bucket_is_a_function_of_user_and_salt_only():
    assert bucket("u1", "s") == bucket("u1", "s")
    assert 0 <= bucket("u1", "s") < BUCKETS
    # another salt reshuffles: the same users are not always the first to get a candidate
    population = users(7, 2000)
    assert {u for u in population if on_candidate(u, "a", 5)} != {
        u for u in population if on_candidate(u, "b", 5)
    }


def test_a_weight_outside_0_100_is_refused():
    with pytest.raises(ValueError, match="not a percentage"):
        on_candidate("u", "s", 101)


def test_pseudonyms_depend_on_the_secret_salt_and_hide_the_id():
    assert pseudonym("user-42", "s1") != pseudonym("user-42", "s2")
    assert len(pseudonym("user-42", "s1")) == 32 and "user" not in pseudonym("user-42", "s1")
    with pytest.raises(CohortError, match="no pseudonym salt"):
        pseudonym("user-42", "")


def test_the_plans_beta_criteria_are_read_into_rules():
    rules = rules_from(BETA)
    assert (rules.min_orders_3_months, rules.min_sessions_per_month) == (5, 10)
    assert rules.positive_service_history and rules.prefer_previous_beta
    assert set(rules.spread) == {"device", "city"}


def test_a_criterion_selection_cannot_apply_is_an_error():
    audience = BETA.model_copy(update={"criteria": (*BETA.criteria, "Likes cats")})
    with pytest.raises(CohortError, match="'Likes cats' is not one cohort selection can apply"):
        rules_from(audience)


def test_the_beta_quotas_are_the_plans_60_40_of_50():
    assert platform_quotas(BETA) == {"ios": 30, "android": 20}


def population(seed: int, count: int) -> list[Candidate]:
    rng = random.Random(seed)
    cities = ["New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Seattle", "Miami", "Denver"]
    return [
        Candidate(
            user_id=f"u{i}",
            platform=rng.choice(["ios", "android"]),
            city=rng.choice(cities),
            device=rng.choice(
                [
                    "iPhone 15 / iOS 17",
                    "iPhone 12 / iOS 16",
                    "Pixel 7 / Android 14",
                    "Galaxy S21 / Android 13",
                ]
            ),
            orders_3_months=rng.randint(0, 12),
            sessions_per_month=rng.uniform(0, 30),
            positive_service_history=rng.random() < 0.8,
            previous_beta=rng.random() < 0.1,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("seed", [11, 12])
def test_the_selected_cohort_meets_every_quota_and_criterion(seed):
    candidates = population(seed, 2000)
    by_pseudonym = {pseudonym(c.user_id, "salt"): c for c in candidates}

    cohort = select_cohort(BETA, candidates, "salt", stage="beta")

    chosen = [by_pseudonym[i] for i in cohort.ids]
    assert len(chosen) == 50 and len(set(cohort.ids)) == 50
    assert sum(c.platform == "ios" for c in chosen) == 30
    assert cohort.mix["platform"] == {"android": 40.0, "ios": 60.0}
    assert all(
        c.orders_3_months > 5 and c.sessions_per_month > 10 and c.positive_service_history for c in chosen
    )
    assert cohort.mix["cities"] == 8 and cohort.mix["devices"] == 4  # every city and device represented
    # previous beta users are taken first, up to each platform's quota
    expected = sum(
        min(quota, sum(c.previous_beta and c.platform == platform and eligible(c) for c in candidates))
        for platform, quota in cohort.quotas.items()
    )
    assert expected > 0 and cohort.mix["previous_beta"] == expected


def eligible(c: Candidate) -> bool:
    return c.orders_3_months > 5 and c.sessions_per_month > 10 and c.positive_service_history


def test_the_same_inputs_select_the_same_cohort():
    candidates = population(5, 500)
    assert select_cohort(BETA, candidates, "s", stage="beta") == select_cohort(
        BETA, candidates[::-1], "s", stage="beta"
    )


def test_a_quota_the_candidates_cannot_fill_names_it():
    everyone = population(3, 2000)
    android = [c for c in everyone if c.platform == "android" and eligible(c)][:19]
    candidates = [c for c in everyone if c.platform == "ios"] + android
    with pytest.raises(
        CohortError, match=r"^stage beta: cannot fill the android quota of 20 users: only 19 android"
    ):
        select_cohort(BETA, candidates, "s", stage="beta")


def test_a_percentage_audience_is_not_selected():
    with pytest.raises(CohortError, match="is a percentage, not a cohort"):
        select_cohort(PLAN.stage("limited").audience, [], "s", stage="limited")
