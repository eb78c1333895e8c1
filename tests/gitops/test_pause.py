"""`rollout pause` / `rollout resume`: one commit on main each, with its reason; a paused stack is never
promoted (the promotion holds with reason paused), and still rolled back when it needs to be.

Against a real bare remote, as the other gitops tests; the promote command runs with --no-pr.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from gitops_fixtures import T0, Remote, git, healthy, run, write_plan_file

from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo
from rollout_policies.gitops.stack_config import state_from_text
from rollout_policies.plan.model import Plan

NOW = T0 + timedelta(hours=1, minutes=30)
CONFIG = "Pulumi.prod-us.yaml"


def ops(clone: Path, plan: Plan) -> GitOps:
    return GitOps(repo=GitRepo(clone), plan=plan, actor="oncall@laptop")


def changed_lines(remote: Remote, before: str, after: str = "main") -> list[str]:
    diff = git(remote.bare, "diff", "-U0", before, after).splitlines()
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_pause_is_one_commit_on_main_adding_one_line_with_the_reason(remote: Remote, plan: Plan) -> None:
    before = remote.log("main")
    before_state = state_from_text(remote.show("main", CONFIG), "x")
    outcome = ops(remote.clone("a"), plan).pause(["prod-us"], reason="waiting for the iOS fix", now=NOW)

    assert outcome.result == "paused" and remote.log("main") == [outcome.commit, *before]
    assert changed_lines(remote, before[0]) == ["+    paused: true"]
    after = state_from_text(remote.show("main", CONFIG), "x")
    assert after == before_state.model_copy(update={"paused": True})  # traffic untouched
    message = git(remote.bare, "log", "-1", "--format=%B", "main")
    for trailer in (
        "Rollout-Decision: pause",
        "Rollout-Stack: prod-us",
        "Rollout-Reason: waiting for the iOS fix",
        "Rollout-Actor: oncall@laptop",
    ):
        assert trailer in message


def test_a_paused_stack_is_held_with_reason_paused_and_no_branch(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    paused = gitops.pause(["prod-us"], reason="waiting for the iOS fix", now=NOW)
    branches = remote.branches()

    outcome = gitops.promote("prod-us", healthy(), now=NOW)  # healthy evidence: it would promote
    assert (outcome.result, outcome.decision.action.value) == ("held", "hold")
    first = outcome.decision.reasons[0]
    assert (first.code.value, first.message) == (
        "paused",
        f"paused by oncall@laptop in {(paused.commit or '')[:12]}: waiting for the iOS fix",
    )
    assert "ready" not in [r.code.value for r in outcome.decision.reasons]
    assert remote.branches() == branches

    unpaused = ops(remote.clone("b"), plan).promote("prod-eu", healthy(), now=NOW)
    assert unpaused.result == "proposed"  # the other stack is not paused


def test_a_paused_stack_that_needs_a_rollback_is_still_reported(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    gitops.pause(["prod-us"], reason="hold", now=NOW)
    outcome = gitops.promote("prod-us", healthy(3.0), now=NOW)  # beyond the gate's alert
    assert outcome.result == "rollback-needed"


def test_resume_turns_the_flag_off_and_promotion_decides_again(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    paused = gitops.pause(["prod-us"], reason="hold", now=NOW)
    resumed = gitops.resume(["prod-us"], reason="iOS fix shipped", now=NOW + timedelta(minutes=5))

    assert resumed.result == "resumed" and remote.log("main")[:2] == [resumed.commit, paused.commit]
    assert changed_lines(remote, paused.commit or "") == ["-    paused: true", "+    paused: false"]
    assert "Rollout-Decision: resume" in git(remote.bare, "log", "-1", "--format=%B", "main")
    assert gitops.promote("prod-us", healthy(), now=NOW + timedelta(minutes=5)).result == "proposed"


def test_pausing_twice_or_resuming_a_running_stack_commits_nothing(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    assert gitops.resume(["prod-us"], reason="r", now=NOW).result == "not-paused"
    gitops.pause(["prod-us"], reason="r", now=NOW)
    before = remote.log("main")
    again = gitops.pause(["prod-us"], reason="r", now=NOW)
    assert (again.result, again.commit, remote.log("main")) == ("already-paused", None, before)


def test_pausing_two_stacks_is_one_commit(remote: Remote, plan: Plan) -> None:
    before = remote.log("main")
    outcome = ops(remote.clone("a"), plan).pause(["prod-us", "prod-eu"], reason="freeze", now=NOW)
    assert outcome.changed == ("prod-us", "prod-eu") and len(remote.log("main")) == len(before) + 1
    for stack in outcome.changed:
        assert state_from_text(remote.show("main", f"Pulumi.{stack}.yaml"), "x").paused


def test_the_commands_pause_hold_the_scheduled_promote_and_resume(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clone = remote.clone("work")
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text("observed_at: 2026-11-20T10:29:00Z\nmetrics:\n  crash_rate: {value: 0.4}\n")
    common = ["--plan", str(write_plan_file(tmp_path)), "--repo", str(clone)]
    # the scheduled run: every stack of the repository, no --stack
    promote = ["promote", *common, "--no-pr", "--metrics-file", str(metrics), "--json"]

    code, out, err = run(["pause", *common, "--stack", "prod-us", "--reason", "freeze", "--json"], capsys)
    assert (code, err, json.loads(out)["result"]) == (0, "", "paused")
    code, out, _ = run([*promote, "--now", "2026-11-20T10:30:00Z"], capsys)
    results = {row["stack"]: row for row in json.loads(out)}
    assert (results["prod-us"]["result"], results["prod-eu"]["result"]) == ("held", "proposed")
    assert results["prod-us"]["reasons"][0].startswith("limited/step 0: paused by ")

    code, out, _ = run(["status", *common, "--stack", "prod-us", "--json"], capsys)
    assert json.loads(out)[0]["paused"] is True and json.loads(out)[0]["last_decision"] == "pause"

    code, out, _ = run(["resume", *common, "--stack", "prod-us", "--reason", "thawed"], capsys)
    assert code == 0 and out.startswith("resumed: resumed prod-us in ")
    code, out, _ = run([*promote, "--stack", "prod-us", "--now", "2026-11-20T10:31:00Z"], capsys)
    assert json.loads(out)[0]["result"] == "proposed"


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_the_commands_need_a_stack_and_a_reason(
    verb: str, remote: Remote, capsys: pytest.CaptureFixture[str]
) -> None:
    clone = str(remote.clone("work"))
    code, _, err = run([verb, "--repo", clone, "--reason", "r"], capsys)
    assert (code, err) == (
        2,
        f"rollout: error: --stack: name the stacks to {verb} (a {verb} never guesses)\n",
    )
    code, _, err = run([verb, "--repo", clone, "--stack", "prod-us"], capsys)
    assert code == 2 and "Missing option '--reason'" in err


def test_a_rollback_of_a_paused_stack_keeps_it_paused(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    gitops.pause(["prod-us"], reason="freeze", now=NOW)
    gitops.rollback(["prod-us"], reason="crash spike", now=NOW + timedelta(minutes=1))
    state = state_from_text(remote.show("main", CONFIG), "x")
    assert (state.rolled_back, state.paused, state.candidate_weight) == (True, True, 0)
    # the resume of a rolled-back stack waits for resume: still held
    assert gitops.promote("prod-us", healthy(), now=NOW + timedelta(hours=2)).result == "held"


def test_already_rolled_back_names_the_rollback_not_a_later_pause(remote: Remote, plan: Plan) -> None:
    gitops = ops(remote.clone("a"), plan)
    first = gitops.rollback(["prod-us"], reason="crash spike", now=NOW)
    gitops.pause(["prod-us"], reason="investigating", now=NOW + timedelta(minutes=1))
    again = gitops.rollback(["prod-us"], reason="crash spike", now=NOW + timedelta(minutes=2))
    assert again.result == "already-rolled-back"
    assert f"already rolled back by {(first.commit or '')[:12]}" in again.message
