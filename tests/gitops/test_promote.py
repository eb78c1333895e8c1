"""Promotion as a branch and a pull request, against a real bare remote and the GitHub API stand-in.

The forge is a local stand-in for GitHub's REST API (GitHub cannot be reached here); every request
it receives is checked against GitHub's published OpenAPI description (see the ``forge`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from gitops_fixtures import T0, Remote, git, healthy

from devenv.forge_standin import ForgeStandIn
from rollout_policies.core import Evidence, Measurement
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.forge import GitHubForge
from rollout_policies.gitops.repo import GitRepo, RetryPolicy
from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.plan.model import Plan

NOW = T0 + timedelta(hours=1, minutes=30)
BRANCH = "rollout/prod-us/limited-step-1"
REVIEWERS = ("@markethub/devops-leads", "@markethub-cto")


def gitops(
    clone: Path, plan: Plan, forge_url: str | None = None, hook: Callable[[str], None] | None = None
) -> GitOps:
    repo = GitRepo(clone, retry=RetryPolicy(attempts=3, seconds=10, first_wait=0.05))
    if hook is not None:
        repo.hook = hook
    forge = (
        GitHubForge("markethub/rollout", base_url=forge_url, token="test-token", first_wait=0.01)
        if forge_url
        else None
    )
    return GitOps(repo=repo, plan=plan, forge=forge, reviewers=REVIEWERS, actor="tester@ci")


def test_promote_pushes_one_commit_on_the_step_branch_and_opens_the_pull_request(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]
) -> None:
    url, standin = forge
    outcome = gitops(remote.clone("a"), plan, url).promote("prod-us", healthy(), now=NOW)

    assert outcome.result == "proposed"
    assert outcome.branch == BRANCH
    main = remote.log("main")
    assert remote.log(BRANCH) == [outcome.commit, *main]  # exactly one commit on top of main
    assert git(remote.bare, "diff", "--name-only", "main", BRANCH).split() == ["Pulumi.prod-us.yaml"]
    state = state_from_text(remote.show(BRANCH, "Pulumi.prod-us.yaml"), "x")
    assert (state.stage, state.step, state.candidate_weight) == ("limited", 1, 5)
    diff = git(remote.bare, "diff", "-U0", "main", BRANCH).splitlines()
    assert [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "-    step: 0                 # index into the stage's traffic steps",
        "+    step: 1                 # index into the stage's traffic steps",
        "-    weights:   {blue: 98, green: 2}",
        "+    weights:   {blue: 95, green: 5}",
        "-    stepStartedAt:  '2026-11-20T09:00:00Z'   # single quotes on purpose",
        "+    stepStartedAt:  '2026-11-20T10:30:00Z'   # single quotes on purpose",
    ]
    message = git(remote.bare, "log", "-1", "--format=%B", BRANCH)
    assert "Rollout-Decision: promote" in message
    assert "Rollout-Stage: limited" in message and "Rollout-Step: 1" in message
    assert "Rollout-Plan: markethub-mobile-test" in message

    pull = standin.pull(BRANCH)
    assert pull is not None and pull.base == "main"
    assert "| Technical Metrics | Crashes/Exceptions | 0.4% | `< 1` | `> 2` | ✅ meets target |" in pull.body
    assert "- [ ] **feedback**: Positive feedback (DevOps lead)" in pull.body
    assert pull.reviewers == ["markethub-cto"] and pull.teams == ["devops-leads"]
    assert outcome.pull is not None and outcome.pull.number == pull.number


@pytest.mark.parametrize(("value", "result"), [(1.5, "held"), (3.0, "rollback-needed")])
def test_hold_or_rollback_leaves_no_branch_and_no_pull_request(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn], value: float, result: str
) -> None:
    url, standin = forge
    before = remote.branches()
    outcome = gitops(remote.clone("a"), plan, url).promote("prod-us", healthy(value), now=NOW)
    assert outcome.result == result
    assert remote.branches() == before
    assert standin.pulls == []
    assert git(remote.root / "a", "branch", "--list").split() == ["*", "main"]


def test_dry_run_shows_the_diff_and_writes_nothing(remote: Remote, plan: Plan) -> None:
    before = remote.branches()
    outcome = gitops(remote.clone("a"), plan).promote("prod-us", healthy(), now=NOW, dry_run=True)
    assert outcome.result == "dry-run"
    assert "+    weights:   {blue: 95, green: 5}" in outcome.diff
    assert remote.branches() == before


def test_last_step_waiting_only_on_signoff_opens_the_pull_request_with_the_checklist(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]
) -> None:
    url, standin = forge
    clone = remote.clone("a")
    first = gitops(clone, plan).promote("prod-us", healthy(), now=NOW)
    git(remote.bare, "update-ref", "refs/heads/main", first.commit or "")  # a person merged it
    later = T0 + timedelta(hours=3)

    def evidence(state: object) -> Evidence:
        return Evidence.of([Measurement.ok("crash_rate", 0.3, later)])

    outcome = gitops(clone, plan, url).promote("prod-us", evidence, now=later)
    assert outcome.result == "proposed"
    assert outcome.branch == "rollout/prod-us/full-step-0"
    pull = standin.pull("rollout/prod-us/full-step-0")
    assert pull is not None and "- [ ] **feedback**" in pull.body


def test_two_promotions_racing_on_one_stack_exactly_one_wins(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]
) -> None:
    """Two clones decide at once; both commit before either pushes (a barrier makes the race certain).

    The guard is the leased push: without it the second push would replace the first commit.
    """
    url, standin = forge
    both_committed = threading.Barrier(2, timeout=30)
    first_pushed = threading.Event()

    def first(point: str) -> None:
        if point == "committed":
            both_committed.wait()
        if point == "pushed":
            first_pushed.set()

    def second(point: str) -> None:
        # Push only after the first run's push landed, with a commit built from the same old main:
        # git's own ref lock cannot save us here, only the lease can.
        if point == "committed":
            both_committed.wait()
            assert first_pushed.wait(timeout=30)

    runs = [
        gitops(remote.clone("a"), plan, url, hook=first),
        gitops(remote.clone("b"), plan, url, hook=second),
    ]
    outcomes: list[object] = [None, None]

    def run(index: int) -> None:
        outcomes[index] = runs[index].promote("prod-us", healthy(), now=NOW)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert [o.result for o in outcomes] == ["proposed", "lost-race"]  # type: ignore[union-attr]
    assert remote.branches()[BRANCH] == outcomes[0].commit  # type: ignore[union-attr]
    assert outcomes[1].commit == outcomes[0].commit  # type: ignore[union-attr]
    assert len(remote.log(BRANCH)) == len(remote.log("main")) + 1
    assert len(standin.pulls) == 1


@pytest.mark.parametrize("crash_at", ["committed", "pushed", "pr_opened"])
def test_a_crash_at_any_point_is_finished_by_the_next_run(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn], crash_at: str
) -> None:
    url, standin = forge

    class Crash(Exception):
        pass

    def crash(point: str) -> None:
        if point == crash_at:
            raise Crash(point)

    clone = remote.clone("a")
    with pytest.raises(Crash):
        gitops(clone, plan, url, hook=crash).promote("prod-us", healthy(), now=NOW)

    again = gitops(clone, plan, url).promote("prod-us", healthy(), now=NOW + timedelta(minutes=5))
    assert again.result == ("proposed" if crash_at == "committed" else "already-proposed")
    assert len(remote.log(BRANCH)) == len(remote.log("main")) + 1  # still one commit
    assert len(standin.pulls) == 1
    pull = standin.pull(BRANCH)
    assert pull is not None and pull.reviewers == ["markethub-cto"] and pull.teams == ["devops-leads"]


def test_a_flaky_forge_is_retried(remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn]) -> None:
    url, standin = forge
    standin.fail_next = 2
    outcome = gitops(remote.clone("a"), plan, url).promote("prod-us", healthy(), now=NOW)
    assert outcome.pull is not None
    assert len(standin.pulls) == 1


def test_a_merged_branch_of_the_same_step_is_replaced_not_adopted(remote: Remote, plan: Plan) -> None:
    """Promoted, merged, rolled back, promoted again: the old merged branch must not count as proposed."""
    clone = remote.clone("a")
    first = gitops(clone, plan).promote("prod-us", healthy(), now=NOW)
    git(remote.bare, "update-ref", "refs/heads/main", first.commit or "")  # merged
    ops = gitops(clone, plan)
    ops.rollback(["prod-us"], reason="bad", now=NOW + timedelta(minutes=10))
    later = NOW + timedelta(hours=2)

    def evidence(state: object) -> Evidence:
        return Evidence.of([Measurement.ok("crash_rate", 0.2, later)])

    resumed = ops.promote("prod-us", evidence, now=later)  # back to step 0's 2% first
    assert resumed.branch == "rollout/prod-us/limited-step-0"
    git(remote.bare, "update-ref", "refs/heads/main", resumed.commit or "")  # merged
    later = later + timedelta(hours=1, minutes=30)
    again = ops.promote("prod-us", evidence, now=later)
    assert again.result == "proposed" and again.branch == BRANCH
    assert again.commit != first.commit
    assert remote.branches()[BRANCH] == again.commit
    assert state_from_text(remote.show(BRANCH, "Pulumi.prod-us.yaml"), "x").candidate_weight == 5
