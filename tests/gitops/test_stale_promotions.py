"""A rollback marks the stack's open promotion pull requests stale, so nobody merges the candidate back.

The forge is the local stand-in for GitHub's REST API (GitHub cannot be reached here); every request
is checked against GitHub's OpenAPI description (the ``forge`` fixture).
"""

from __future__ import annotations

from datetime import timedelta

from gitops_fixtures import T0, Remote, healthy

from devenv.forge_standin import ForgeStandIn
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.forge import GitHubForge
from rollout_policies.gitops.repo import GitRepo, RetryPolicy
from rollout_policies.plan.model import Plan

BRANCH = "rollout/prod-us/limited-step-1"


def _ops(remote: Remote, name: str, plan: Plan, url: str | None) -> GitOps:
    repo = GitRepo(remote.clone(name), retry=RetryPolicy(attempts=3, seconds=10, first_wait=0.05))
    forge = (
        GitHubForge("markethub/rollout", base_url=url, token="test-token", first_wait=0.01) if url else None
    )
    return GitOps(repo=repo, plan=plan, forge=forge, actor="tester")


def test_a_rollback_comments_stale_on_the_open_promotion_of_that_stack(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]
) -> None:
    url, standin = forge
    proposed = _ops(remote, "ci", plan, url).promote(
        "prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30)
    )
    assert proposed.result == "proposed"
    outcome = _ops(remote, "controller", plan, url).rollback(
        ["prod-us"], reason="automatic rollback: Crash Rate > 5%", now=T0 + timedelta(hours=2)
    )
    assert outcome.result == "rolled-back" and outcome.warnings == ()
    pull = standin.pull(BRANCH)
    assert pull is not None
    assert len(pull.comments) == 1
    assert pull.comments[0].startswith(f"**Stale: prod-us was rolled back** in {outcome.commit[:12]} on main")
    assert "Crash Rate > 5%" in pull.comments[0]


def test_a_rollback_of_another_stack_leaves_the_promotion_alone(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]
) -> None:
    url, standin = forge
    _ops(remote, "ci", plan, url).promote("prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30))
    _ops(remote, "controller", plan, url).rollback(["prod-eu"], reason="eu only", now=T0 + timedelta(hours=2))
    pull = standin.pull(BRANCH)
    assert pull is not None and pull.comments == []


def test_an_unreachable_forge_is_a_warning_and_the_rollback_stands(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]
) -> None:
    url, _ = forge
    _ops(remote, "ci", plan, url).promote("prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30))
    outcome = _ops(remote, "controller", plan, "http://127.0.0.1:9").rollback(
        ["prod-us"], reason="crash", now=T0 + timedelta(hours=2)
    )
    assert outcome.result == "rolled-back"
    assert [w.split(":")[0] for w in outcome.warnings] == ["forge"]
