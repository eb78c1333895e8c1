"""`status` reads the state, the last decision (from commit trailers) and drift from git and the cluster."""

from __future__ import annotations

from datetime import timedelta

from gitops_fixtures import T0, Remote, git, healthy

from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour


class FixedLiveState:
    """Live weights as a cluster would report them (the Kubernetes-backed one is wired by the lead)."""

    def __init__(self, weights: dict[Colour, int]) -> None:
        self.weights = weights

    def live_weights(self, stack: str) -> dict[Colour, int] | None:
        return self.weights


def test_status_shows_last_decision_pending_promotion_and_unknown_drift(remote: Remote, plan: Plan) -> None:
    clone = remote.clone("a")
    ops = GitOps(repo=GitRepo(clone), plan=plan, actor="ci@runner")
    proposed = ops.promote("prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30))
    rolled = ops.rollback(["prod-eu"], reason="bad", now=T0 + timedelta(hours=2))

    us, eu = ops.status(["prod-us", "prod-eu"])
    assert us.last_decision is None  # the promotion is still a pull request, not on main
    assert us.pending == ("rollout/prod-us/limited-step-1",)
    assert us.drift == "unknown"
    assert eu.last_decision == "rollback"
    assert eu.last_decision_commit == rolled.commit
    assert eu.last_decision_by == "ci@runner"
    assert eu.state.candidate_weight == 0

    git(remote.bare, "update-ref", "refs/heads/main", proposed.commit or "", rolled.commit or "")
    # main moved by a merge would normally keep both; here the promotion replaces main to keep it short
    (us_after,) = ops.status(["prod-us"])
    assert us_after.last_decision == "promote"
    assert us_after.state.step == 1


def test_status_reports_drift_when_the_cluster_disagrees_with_git(remote: Remote, plan: Plan) -> None:
    ops = GitOps(repo=GitRepo(remote.clone("a")), plan=plan)
    (same,) = ops.status(["prod-us"], FixedLiveState({Colour.BLUE: 98, Colour.GREEN: 2}))
    (other,) = ops.status(["prod-us"], FixedLiveState({Colour.BLUE: 90, Colour.GREEN: 10}))
    assert same.drift == "in-sync"
    assert other.drift == "drift" and other.live == {"blue": 90, "green": 10}
