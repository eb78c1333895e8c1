"""Notifications follow changes of state: a repeated decision is not posted again; the memory of
what was posted is git (the remote's refs/rollout/notified), not the process, because each scheduled
run is a fresh process. Slack and PagerDuty cannot be reached here: a local HTTP receiver stands in.
"""

from __future__ import annotations

from datetime import timedelta

from gitops_fixtures import T0, Receiver, Remote, git, healthy

from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.ledger import LEDGER_REF, DecisionLedger
from rollout_policies.gitops.notify import Notifier
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.plan.model import Plan


def _run(remote: Remote, plan: Plan, receiver: Receiver, clone: str, value: float, minutes: int) -> str:
    """One scheduled run: a fresh clone, a fresh process's objects, the same remote."""
    environ = {"TEST_SLACK_URL": f"{receiver.url}/services/T/B/x"}
    repo = GitRepo(remote.clone(clone))
    ops = GitOps(
        repo=repo,
        plan=plan,
        notifier=Notifier(plan.notifications, environ=environ),
        ledger=DecisionLedger(repo),
        actor="ci",
    )
    return ops.promote("prod-eu", healthy(value), now=T0 + timedelta(hours=1, minutes=minutes)).message


def test_a_hold_that_repeats_the_last_decision_is_not_posted_again(
    remote: Remote, plan: Plan, receiver: Receiver
) -> None:
    _run(remote, plan, receiver, "first", 1.5, 30)
    message = _run(remote, plan, receiver, "second", 1.6, 35)  # same gate between target and alert
    texts = [str(body["text"]) for body in receiver.at("/services/")]
    assert len(texts) == 1 and "*HOLD*" in texts[0]
    assert "not posted" in message


def test_a_hold_for_other_reasons_is_posted(remote: Remote, plan: Plan, receiver: Receiver) -> None:
    _run(remote, plan, receiver, "first", 1.5, 30)
    _run(remote, plan, receiver, "second", 9.0, 35)  # now beyond the alert threshold: news
    assert len(receiver.at("/services/")) == 2


def test_the_posted_decisions_are_a_git_history_on_the_remote(
    remote: Remote, plan: Plan, receiver: Receiver
) -> None:
    _run(remote, plan, receiver, "first", 1.5, 30)
    log = git(remote.bare, "log", "--format=%s", LEDGER_REF).splitlines()
    assert len(log) == 1 and log[0].startswith("rollout(prod-eu): posted hold limited step 0: ")
    assert "gate_between:crash_rate" in log[0]
    # The ledger is not a branch: no pull request, no workflow, no exception to main's protection.
    assert git(remote.bare, "branch", "--list", "*notified*").strip() == ""


def test_a_failed_post_is_not_recorded_so_the_next_run_posts_again(remote: Remote, plan: Plan) -> None:
    repo = GitRepo(remote.clone("a"))
    ops = GitOps(
        repo=repo,
        plan=plan,
        notifier=Notifier(plan.notifications, environ={"TEST_SLACK_URL": "http://127.0.0.1:9/x"}),
        ledger=DecisionLedger(repo),
    )
    ops.promote("prod-eu", healthy(1.5), now=T0 + timedelta(hours=1, minutes=30))
    assert DecisionLedger(repo).last("prod-eu") is None
