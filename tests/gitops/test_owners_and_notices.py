"""Required reviewers and CODEOWNERS from the plan's decision authority; decision notices on promote.

Slack and PagerDuty cannot be reached here: a local HTTP receiver stands in for both.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from gitops_fixtures import T0, Receiver, Remote, healthy

from rollout_policies.errors import UserError
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.notify import Notifier
from rollout_policies.gitops.owners import load_handles, parse_handle_flags, render_codeowners, reviewers_for
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.plan.model import Plan


def test_reviewers_follow_the_plan_order_and_codeowners_covers_the_stack_configs(
    tmp_path: Path, plan: Plan
) -> None:
    source = tmp_path / "rollout-reviewers.yaml"
    source.write_text('CTO: "@markethub/cto"\nDevOps lead: ["@markethub/devops-leads", "@alice"]\n')
    reviewers = reviewers_for(plan, load_handles(source), str(source))
    assert reviewers == ("@markethub/devops-leads", "@alice", "@markethub/cto")
    text = render_codeowners(plan, reviewers, ["Pulumi.prod-us.yaml", "Pulumi.prod-eu.yaml"])
    assert "/Pulumi.prod-eu.yaml @markethub/devops-leads @alice @markethub/cto" in text.splitlines()
    assert "/Pulumi.prod-us.yaml @markethub/devops-leads @alice @markethub/cto" in text.splitlines()


def test_a_role_without_a_handle_names_the_file_and_the_role(tmp_path: Path, plan: Plan) -> None:
    source = tmp_path / "rollout-reviewers.yaml"
    source.write_text('CTO: "@markethub/cto"\n')
    with pytest.raises(
        UserError, match=r"rollout-reviewers.yaml: no handle for decision_authority 'DevOps lead'"
    ):
        reviewers_for(plan, load_handles(source), str(source))


def test_a_malformed_reviewer_flag_is_rejected() -> None:
    with pytest.raises(UserError, match=r"^--reviewer 'CTO:cto'"):
        parse_handle_flags(["CTO:cto"])


def test_every_promotion_decision_goes_to_slack_and_none_pages(
    remote: Remote, plan: Plan, receiver: Receiver
) -> None:
    environ = {
        "TEST_SLACK_URL": f"{receiver.url}/services/T/B/x",
        "TEST_PD_KEY": "k",
        "PAGERDUTY_EVENTS_URL": f"{receiver.url}/v2/enqueue",
    }
    ops = GitOps(
        repo=GitRepo(remote.clone("a")),
        plan=plan,
        notifier=Notifier(plan.notifications, environ=environ),
        actor="ci",
    )
    now = T0 + timedelta(hours=1, minutes=30)
    ops.promote("prod-us", healthy(), now=now)
    ops.promote("prod-eu", healthy(1.5), now=now)
    texts = [str(body["text"]) for body in receiver.at("/services/")]
    assert len(texts) == 2
    assert "*PROMOTE*" in texts[0] and "prod-us" in texts[0]
    assert "*HOLD*" in texts[1] and "prod-eu" in texts[1]
    assert receiver.at("/v2/enqueue") == []


def test_an_unreachable_webhook_is_a_warning_not_a_failure(remote: Remote, plan: Plan) -> None:
    environ = {"TEST_SLACK_URL": "http://127.0.0.1:9/secret-path"}
    ops = GitOps(
        repo=GitRepo(remote.clone("a")), plan=plan, notifier=Notifier(plan.notifications, environ=environ)
    )
    outcome = ops.promote("prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30))
    assert outcome.result == "proposed"
    assert outcome.warnings == ("Slack notification failed: ConnectError",)
