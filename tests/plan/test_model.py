"""The plan model's own lookups: an unknown stage is a plan error with one wording for every caller."""

from __future__ import annotations

import pytest

from rollout_policies.errors import UserError
from rollout_policies.plan.loader import DEFAULT_PLAN, load_plan
from rollout_policies.plan.model import PlanError, UnknownStage


def test_an_unknown_stage_is_a_plan_error_naming_the_stages() -> None:
    plan = load_plan(DEFAULT_PLAN)

    with pytest.raises(UnknownStage) as caught:
        plan.stage("gamma")

    assert isinstance(caught.value, PlanError)
    assert isinstance(caught.value, UserError)
    assert caught.value.stage_id == "gamma"
    assert str(caught.value) == (
        "stage 'gamma' is not in plan markethub-mobile progressive rollout "
        "(stages: beta, limited, medium, majority, full)"
    )


def test_a_known_stage_is_returned() -> None:
    assert load_plan(DEFAULT_PLAN).stage("medium").id == "medium"
