"""The release lifecycle: `rollout release start|finalize`, `rollout retry` and `rollout abort`, each ONE
commit on main with its reasons in trailers, like pause and resume; and a rollback or abort closes the
stack's open promotion pull requests (comment linking the rollback commit, then closed, branch deleted).

Against a real bare remote and clones (``gitops_fixtures``), the forge being the GitHub API stand-in
whose every request is checked against GitHub's OpenAPI description.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from gitops_fixtures import T0, Remote, git, healthy, run, write_plan_file

from devenv.forge_standin import ForgeStandIn
from rollout_policies.core import Evidence, Measurement
from rollout_policies.errors import UserError
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.forge import GitHubForge
from rollout_policies.gitops.repo import GitRepo, RetryPolicy
from rollout_policies.gitops.stack_config import render_state, state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour, Release, RolloutState

NOW = T0 + timedelta(hours=3)
CONFIG = "Pulumi.prod-us.yaml"


def ops(clone: Path, plan: Plan, url: str | None = None) -> GitOps:
    repo = GitRepo(clone, retry=RetryPolicy(attempts=3, seconds=10, first_wait=0.05))
    forge = (
        GitHubForge("markethub/rollout", base_url=url, token="test-token", first_wait=0.01) if url else None
    )
    return GitOps(repo=repo, plan=plan, forge=forge, actor="oncall@laptop")


def state(remote: Remote, stack: str = "prod-us") -> RolloutState:
    return state_from_text(remote.show("main", f"Pulumi.{stack}.yaml"), "x")


def put_state(remote: Remote, **update: Any) -> RolloutState:
    """Move prod-us on main to another state (as merged promotions would), through the one writer."""
    clone = remote.clone(f"put-{len(remote.log())}")
    text = (clone / CONFIG).read_text()
    target = RolloutState.model_validate({**state_from_text(text, CONFIG).model_dump(), **update})
    (clone / CONFIG).write_text(render_state(text, target, CONFIG))
    git(clone, "commit", "-q", "-am", "test: move prod-us")
    git(clone, "push", "-q", "origin", "main")
    return target


def at_full(remote: Remote) -> RolloutState:
    return put_state(remote, stage="full", step=0, weights={Colour.BLUE: 0, Colour.GREEN: 100})


def last_message(remote: Remote) -> str:
    return git(remote.bare, "log", "-1", "--format=%B", "main")


def changed_lines(remote: Remote, before: str) -> list[str]:
    diff = git(remote.bare, "diff", "-U0", before, "main").splitlines()
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


# -- release start -----------------------------------------------------------------------------------


def test_release_start_mid_release_is_refused_naming_where_the_stack_is(remote: Remote, plan: Plan) -> None:
    before = remote.log()
    with pytest.raises(UserError) as refused:
        ops(remote.clone("a"), plan).release_start(["prod-us"], version="5.1", reason="", now=NOW)
    assert str(refused.value) == (
        "stack prod-us is at stage limited step 0 (2% candidate): finish (promote to the end and "
        "`rollout release finalize`) or roll back the release first"
    )
    assert remote.log() == before


def test_release_start_at_full_needs_finalize_first(remote: Remote, plan: Plan) -> None:
    at_full(remote)
    with pytest.raises(UserError, match=r"^stack prod-us is at stage full step 0 \(100% candidate\): run "):
        ops(remote.clone("a"), plan).release_start(["prod-us"], version="5.1", reason="", now=NOW)


def test_finalize_then_release_start_swaps_the_colours_and_returns_to_the_first_stage(
    remote: Remote, plan: Plan
) -> None:
    full = at_full(remote)
    gitops = ops(remote.clone("a"), plan)
    before = remote.log()[0]
    finalized = gitops.release_finalize(["prod-us"], reason="", now=NOW)

    assert finalized.result == "finalized" and remote.log()[0] == finalized.commit
    assert changed_lines(remote, before) == ["+    released: true"]  # traffic untouched
    assert state(remote) == full.model_copy(update={"released": True})
    message = last_message(remote)
    for trailer in ("Rollout-Decision: release-finalize", "Rollout-Released: 5.0", "Rollout-Stack: prod-us"):
        assert trailer in message
    again = gitops.release_finalize(["prod-us"], reason="", now=NOW)
    assert (again.result, again.commit, remote.log()[0]) == ("already-finalized", None, finalized.commit)

    later = NOW + timedelta(minutes=5)
    started = gitops.release_start(["prod-us"], version="5.1.0", reason="weekly train", now=later)
    assert started.result == "started" and remote.log()[:2] == [started.commit, finalized.commit]
    after = state(remote)
    # green served 100% with 5.0: it becomes the stable colour; 5.1.0 goes to blue at limited step 0
    assert (after.stable, after.candidate) == (
        Release(colour=Colour.GREEN, version="5.0"),
        Release(colour=Colour.BLUE, version="5.1.0"),
    )
    assert (after.stage, after.step, after.weights) == ("limited", 0, {Colour.BLUE: 2, Colour.GREEN: 98})
    assert (after.released, after.rolled_back, after.stage_started_at, after.step_started_at) == (
        False,
        False,
        later,
        later,
    )
    text = remote.show("main", CONFIG)
    assert "# the kubeconfig context" in text and "released: false" in text  # edited in place
    message = last_message(remote)
    assert message.startswith(
        "rollout(prod-us): start release 5.1.0 (blue) over 5.0 (green) at limited step 0"
    )
    for trailer in (
        "Rollout-Decision: release-start",
        "Rollout-Version: 5.1.0",
        "Rollout-Stable: 5.0",
        "Rollout-Weights: blue=2,green=98",
        "Rollout-Reason: weekly train",
        "Rollout-Actor: oncall@laptop",
    ):
        assert trailer in message
    # the new release is promoted as any other
    when = later + timedelta(hours=2)
    observed = Evidence.of([Measurement.ok("crash_rate", 0.4, when - timedelta(minutes=1))])
    assert gitops.promote("prod-us", lambda _: observed, now=when).result == "proposed"


def test_release_start_after_a_rollback_keeps_stable_and_replaces_the_candidate(
    remote: Remote, plan: Plan
) -> None:
    put_state(remote, step=1, weights={Colour.BLUE: 95, Colour.GREEN: 5})
    gitops = ops(remote.clone("a"), plan)
    gitops.rollback(["prod-us"], reason="crash spike", now=NOW)
    gitops.release_start(["prod-us"], version="5.0.1", reason="the fix", now=NOW + timedelta(minutes=1))
    after = state(remote)
    assert (after.stable, after.candidate) == (
        Release(colour=Colour.BLUE, version="4.12.0"),
        Release(colour=Colour.GREEN, version="5.0.1"),
    )
    assert (after.stage, after.step, after.candidate_weight, after.rolled_back) == ("limited", 0, 2, False)


def test_a_dry_run_release_start_commits_nothing(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    gitops.rollback(["prod-us"], reason="crash spike", now=NOW)
    before = remote.log()
    outcome = gitops.release_start(["prod-us"], version="5.0.1", reason="", now=NOW, dry_run=True)
    assert (outcome.result, outcome.message, outcome.commit) == (
        "dry-run",
        "would start the release on prod-us",
        None,
    )
    assert remote.log() == before


def test_release_start_of_the_version_already_serving_is_refused(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    gitops.rollback(["prod-us"], reason="crash spike", now=NOW)
    with pytest.raises(UserError, match=r"^stack prod-us already serves 4\.12\.0 \(blue\) to every user"):
        gitops.release_start(["prod-us"], version="4.12.0", reason="", now=NOW)


def test_finalize_before_the_last_step_is_refused(remote: Remote, plan: Plan) -> None:
    with pytest.raises(UserError) as refused:
        ops(remote.clone("a"), plan).release_finalize(["prod-us"], reason="", now=NOW)
    assert str(refused.value) == (
        "stack prod-us is at stage limited step 0 (2% candidate): finalize needs the last step of "
        "stage full with 100% on the candidate (promote it there first)"
    )


def test_a_rollback_of_a_finalized_release_clears_released(remote: Remote, plan: Plan) -> None:
    at_full(remote)
    gitops = ops(remote.clone("a"), plan)
    gitops.release_finalize(["prod-us"], reason="", now=NOW)
    gitops.rollback(["prod-us"], reason="late regression", now=NOW + timedelta(minutes=1))
    after = state(remote)
    assert (after.released, after.rolled_back, after.candidate_weight) == (False, True, 0)


# -- retry ---------------------------------------------------------------------------------------------


def test_retry_restarts_the_rolled_back_stage_from_its_first_step(remote: Remote, plan: Plan) -> None:
    put_state(remote, step=1, weights={Colour.BLUE: 95, Colour.GREEN: 5})
    gitops = ops(remote.clone("a"), plan)
    rolled = gitops.rollback(["prod-us"], reason="crash spike", now=NOW)
    later = NOW + timedelta(minutes=30)
    retried = gitops.retry(["prod-us"], reason="root cause was the cache", now=later)

    assert retried.result == "retried" and remote.log()[:2] == [retried.commit, rolled.commit]
    after = state(remote)
    assert (after.stage, after.step, after.candidate_weight, after.rolled_back) == ("limited", 0, 2, False)
    assert (after.stage_started_at, after.step_started_at) == (later, later)
    assert after.candidate == Release(colour=Colour.GREEN, version="5.0")
    message = last_message(remote)
    assert message.startswith("rollout(prod-us): retry limited from step 0 (2% candidate)")
    assert "Rollout-Decision: retry" in message and "Rollout-Reason: root cause was the cache" in message


def test_retry_is_refused_unless_rolled_back_and_not_paused(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    with pytest.raises(
        UserError, match=r"^stack prod-us is at stage limited step 0 \(2% candidate\) and is "
    ):
        gitops.retry(["prod-us"], reason="", now=NOW)
    gitops.rollback(["prod-us"], reason="bad build", now=NOW, pause=True)  # an abort
    before = remote.log()
    with pytest.raises(UserError) as refused:
        gitops.retry(["prod-us"], reason="", now=NOW)
    assert str(refused.value) == (
        "stack prod-us is at stage limited step 0 (0% candidate) and is paused: "
        "`rollout resume` it first, then retry"
    )
    assert remote.log() == before
    gitops.resume(["prod-us"], reason="fixed", now=NOW + timedelta(minutes=1))
    assert gitops.retry(["prod-us"], reason="", now=NOW + timedelta(minutes=2)).result == "retried"


# -- abort ---------------------------------------------------------------------------------------------


def test_abort_is_one_commit_rolling_back_and_pausing(remote: Remote, plan: Plan) -> None:
    put_state(remote, step=1, weights={Colour.BLUE: 95, Colour.GREEN: 5})
    gitops = ops(remote.clone("a"), plan)
    before = remote.log()
    aborted = gitops.rollback(["prod-us"], reason="bad build", now=NOW, pause=True)

    assert aborted.result == "aborted" and remote.log() == [aborted.commit, *before]
    after = state(remote)
    assert (after.rolled_back, after.paused, after.candidate_weight, after.step) == (True, True, 0, 0)
    message = last_message(remote)
    assert "(abort: paused until resumed)" in message.splitlines()[0]
    for trailer in ("Rollout-Decision: abort", "Rollout-Paused: true", "Rollout-Rolled-Back: true"):
        assert trailer in message
    # the scheduled promotion never resumes it: held, with the abort as the pause's reason
    held = gitops.promote("prod-us", healthy(), now=NOW + timedelta(hours=2))
    assert held.result == "held"
    assert held.decision.reasons[0].message.startswith(f"paused by oncall@laptop in {aborted.commit[:12]}")
    again = gitops.rollback(["prod-us"], reason="bad build", now=NOW, pause=True)
    assert (again.result, again.commit) == ("already-aborted", None)
    assert f"by {aborted.commit[:12]}" in again.message


def test_abort_of_a_rolled_back_stack_only_pauses_it(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    rolled = gitops.rollback(["prod-us"], reason="crash", now=NOW)
    aborted = gitops.rollback(["prod-us"], reason="keep it down", now=NOW + timedelta(minutes=1), pause=True)
    assert aborted.result == "aborted"
    assert changed_lines(remote, rolled.commit or "") == ["+    paused: true"]


# -- stale promotion pull requests ---------------------------------------------------------------------


@pytest.mark.parametrize("pause", [False, True], ids=["rollback", "abort"])
def test_a_rollback_or_abort_closes_the_open_promotion_with_a_comment_and_deletes_its_branch(
    remote: Remote, plan: Plan, forge: tuple[str, ForgeStandIn], pause: bool
) -> None:
    url, standin = forge
    branch = "rollout/prod-us/limited-step-1"
    proposed = ops(remote.clone("ci"), plan, url).promote(
        "prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30)
    )
    assert proposed.result == "proposed" and branch in remote.branches()
    gitops = ops(remote.clone("controller"), plan, url)
    outcome = gitops.rollback(["prod-us"], reason="Crash Rate > 5%", now=NOW, pause=pause)

    assert outcome.warnings == ()
    pull = standin.pull(branch)
    assert pull is not None and pull.state == "closed"
    done = "aborted (rolled back and paused)" if pause else "rolled back"
    assert pull.comments == [
        f"**Stale: prod-us was {done}** in {(outcome.commit or '')[:12]} on main (Crash Rate > 5%). "
        "Closed: merging this promotion would put the candidate back; the next promotion run proposes "
        "a fresh one from the rolled-back state."
    ]
    assert ("PATCH", f"/repos/markethub/rollout/pulls/{pull.number}", {"state": "closed"}) in standin.requests
    assert branch not in remote.branches()
    assert gitops.status(["prod-us"])[0].pending == ()  # no longer listed as a pending promotion


def test_without_a_forge_the_open_promotion_is_a_warning(remote: Remote, plan: Plan) -> None:
    ops(remote.clone("ci"), plan).promote("prod-us", healthy(), now=T0 + timedelta(hours=1, minutes=30))
    gitops = ops(remote.clone("controller"), plan)
    outcome = gitops.rollback(["prod-us"], reason="crash", now=NOW)
    assert outcome.result == "rolled-back"
    assert outcome.warnings == (
        "forge: not configured: rollout/prod-us/limited-step-1 left open "
        "(give --forge-repo and the forge token to close stale promotions)",
    )
    retried = gitops.retry(["prod-us"], reason="", now=NOW + timedelta(minutes=1))
    assert retried.warnings == (
        "stale promotion branches still on the remote: rollout/prod-us/limited-step-1",
    )


# -- the commands ----------------------------------------------------------------------------------------


def test_the_commands_drive_a_release_from_abort_to_the_next_one(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clone = remote.clone("work")
    common = ["--plan", str(write_plan_file(tmp_path)), "--repo", str(clone), "--stack", "prod-us"]

    code, out, err = run(["release", "start", *common, "--version", "5.1"], capsys)
    assert (code, out) == (2, "")
    assert err == (
        "rollout: error: stack prod-us is at stage limited step 0 (2% candidate): finish (promote to the "
        "end and `rollout release finalize`) or roll back the release first\n"
    )
    code, out, err = run(["abort", *common, "--reason", "bad build", "--json"], capsys)
    assert (code, err, json.loads(out)["result"]) == (0, "", "aborted")
    code, out, err = run(["retry", *common], capsys)
    assert code == 2 and "is paused: `rollout resume` it first" in err
    assert run(["resume", *common, "--reason", "fixed"], capsys)[0] == 0
    code, out, err = run(["retry", *common, "--json"], capsys)
    assert (code, err, json.loads(out)["result"]) == (0, "", "retried")
    assert state(remote).candidate_weight == 2

    at_full(remote)
    code, out, err = run(["release", "finalize", *common], capsys)
    assert (code, err) == (0, "") and out.startswith("finalized: finalized prod-us in ")
    code, out, err = run(["status", *common], capsys)
    assert "(released: `rollout release start` begins the next)" in out.splitlines()[0]
    code, out, err = run(["release", "start", *common, "--version", "5.1", "--json"], capsys)
    data = json.loads(out)
    assert (code, err, data["result"], data["changed"]) == (0, "", "started", ["prod-us"])
    assert data["commit"] == remote.log()[0]
    assert state(remote).candidate == Release(colour=Colour.BLUE, version="5.1")

    code, out, err = run(["status", *common, "--json"], capsys)
    assert json.loads(out)[0]["last_decision"] == "release-start"
