"""Break-glass rollback: one commit straight to main, retried on races, applied, idempotent."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from gitops_fixtures import PLAN, T0, Receiver, Remote, git

from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.notify import Notifier
from rollout_policies.gitops.repo import GitRepo, RetryPolicy
from rollout_policies.gitops.stack_config import read_state, state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour

NOW = T0 + timedelta(hours=2)


class WorkingTreeApplier:
    """Records what an applier would apply: the weights in the clone's working tree at apply time.

    The real applier (``pulumi up`` on the traffic resources) reads the same files, so this checks
    that the working tree already holds the rollback when the apply runs.
    """

    def __init__(self, clone: Path) -> None:
        self.clone = clone
        self.applied: list[tuple[str, dict[Colour, int]]] = []

    def apply_traffic(self, stack: str) -> None:
        self.applied.append((stack, dict(read_state(self.clone / f"Pulumi.{stack}.yaml").weights)))


def ops(clone: Path, plan: Plan, hook: object = None, notifier: Notifier | None = None) -> GitOps:
    repo = GitRepo(clone, retry=RetryPolicy(attempts=3, seconds=10, first_wait=0.05))
    if hook is not None:
        repo.hook = hook  # type: ignore[assignment]
    return GitOps(repo=repo, plan=plan, notifier=notifier, actor="oncall@laptop")


def test_rollback_is_one_commit_on_main_for_every_stack_with_who_when_why(remote: Remote, plan: Plan) -> None:
    clone = remote.clone("a")
    before = remote.log()
    applier = WorkingTreeApplier(clone)
    outcome = ops(clone, plan).rollback(
        ["prod-us", "prod-eu"],
        reason="crash rate 3% > 2% alert",
        evidence=["https://grafana.example/d/crash"],
        now=NOW,
        applier=applier,
    )
    assert outcome.result == "rolled-back"
    assert remote.log() == [outcome.commit, *before]
    for stack in ("prod-us", "prod-eu"):
        state = state_from_text(remote.show("main", f"Pulumi.{stack}.yaml"), stack)
        assert state.weights == {Colour.BLUE: 100, Colour.GREEN: 0}
        assert state.step == 0
    message = git(remote.bare, "log", "-1", "--format=%B", "main")
    for line in (
        "Rollout-Decision: rollback",
        "Rollout-Stack: prod-us",
        "Rollout-Stack: prod-eu",
        "Rollout-Reason: crash rate 3% > 2% alert",
        "Rollout-Evidence: https://grafana.example/d/crash",
        "Rollout-Actor: oncall@laptop",
        f"Rollout-At: {NOW.isoformat()}",
    ):
        assert line in message.splitlines()
    assert applier.applied == [
        ("prod-us", {Colour.BLUE: 100, Colour.GREEN: 0}),
        ("prod-eu", {Colour.BLUE: 100, Colour.GREEN: 0}),
    ]


def test_rolling_back_twice_is_a_no_op_with_a_clear_message(remote: Remote, plan: Plan) -> None:
    clone = remote.clone("a")
    first = ops(clone, plan).rollback(["prod-us"], reason="bad", now=NOW)
    again = ops(clone, plan).rollback(["prod-us"], reason="bad", now=NOW + timedelta(minutes=1))
    assert again.result == "already-rolled-back"
    assert again.commit is None
    assert f"already rolled back by {first.commit[:12]}" in again.message  # type: ignore[index]
    assert remote.log()[0] == first.commit


def test_rollback_lands_on_top_of_a_main_that_moved_meanwhile(remote: Remote, plan: Plan) -> None:
    """Someone pushes to main between our read and our push: the lease rejects, we re-read and land."""
    clone, other = remote.clone("a"), remote.clone("b")
    (other / "README.md").write_text("unrelated\n")
    git(other, "add", "README.md")
    git(other, "commit", "-q", "-m", "docs")

    def someone_pushes_first(point: str) -> None:
        if point == "committed" and git(other, "status", "--porcelain", "-b").find("ahead") >= 0:
            git(other, "push", "-q", "origin", "main")

    outcome = ops(clone, plan, hook=someone_pushes_first).rollback(["prod-us"], reason="bad", now=NOW)
    assert outcome.result == "rolled-back"
    log = remote.log()
    assert log[0] == outcome.commit
    assert git(remote.bare, "log", "-1", "--format=%s", "main~1").strip() == "docs"


def test_two_rollbacks_racing_make_one_commit(remote: Remote, plan: Plan) -> None:
    both = threading.Barrier(2, timeout=30)
    first_pushed = threading.Event()

    def first(point: str) -> None:
        if point == "committed":
            both.wait()
        if point == "pushed":
            first_pushed.set()

    def second(point: str) -> None:
        if point == "committed" and not first_pushed.is_set():
            both.wait()
            assert first_pushed.wait(timeout=30)

    runs = [ops(remote.clone("a"), plan, hook=first), ops(remote.clone("b"), plan, hook=second)]
    before = remote.log()
    results: list[str] = ["", ""]

    def run(index: int) -> None:
        results[index] = runs[index].rollback(["prod-us"], reason="bad", now=NOW).result

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == ["rolled-back", "already-rolled-back"]
    assert len(remote.log()) == len(before) + 1


@pytest.mark.parametrize("crash_at", ["committed", "pushed", "applied"])
def test_a_crash_during_rollback_is_finished_by_running_it_again(
    remote: Remote, plan: Plan, crash_at: str
) -> None:
    class Crash(Exception):
        pass

    def crash(point: str) -> None:
        if point == crash_at:
            raise Crash(point)

    clone = remote.clone("a")
    before = remote.log()
    with pytest.raises(Crash):
        ops(clone, plan, hook=crash).rollback(
            ["prod-us"], reason="bad", now=NOW, applier=WorkingTreeApplier(clone)
        )
    applier = WorkingTreeApplier(clone)
    again = ops(clone, plan).rollback(["prod-us"], reason="bad", now=NOW, applier=applier)
    assert again.result == ("rolled-back" if crash_at == "committed" else "already-rolled-back")
    assert len(remote.log()) == len(before) + 1
    assert applier.applied == [("prod-us", {Colour.BLUE: 100, Colour.GREEN: 0})]


def test_rollback_pages_and_posts_without_leaking_secrets(
    remote: Remote, plan: Plan, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {
        "TEST_SLACK_URL": f"{receiver.url}/services/T000/B000/secret-token",
        "TEST_PD_KEY": "R0UT1NGKEYSECRET",
        "PAGERDUTY_EVENTS_URL": f"{receiver.url}/v2/enqueue",
    }
    outcome = ops(remote.clone("a"), plan, notifier=Notifier(plan.notifications, environ=environ)).rollback(
        ["prod-us"], reason="crash rate beyond alert", now=NOW
    )
    assert outcome.warnings == ()
    slack = receiver.at("/services/")
    assert len(slack) == 1 and "ROLLBACK" in str(slack[0]["text"])
    (page,) = receiver.at("/v2/enqueue")
    assert page["routing_key"] == "R0UT1NGKEYSECRET"
    assert page["event_action"] == "trigger"
    assert page["payload"]["severity"] == "critical"  # type: ignore[index]
    assert "crash rate beyond alert" in page["payload"]["summary"]  # type: ignore[index]
    captured = capsys.readouterr()
    assert "secret" not in captured.out + captured.err and "R0UT1NG" not in captured.out + captured.err
    assert "secret" not in outcome.message


BETA_STAGE = {
    "id": "beta",
    "name": "Beta",
    "audience": {"kind": "cohort", "size": 50},
    "steps": [{"weight": 0, "bake": "1h"}],
    "min_duration": "1h",
    "tables": [],
    "rollback_objective": "30m",
}


def _at_beta(remote: Remote) -> Plan:
    """The test plan with a beta stage first, and prod-us moved to it (0% weight, cohort on)."""
    seed = remote.clone("beta-seed")
    path = seed / "Pulumi.prod-us.yaml"
    text = (
        path.read_text()
        .replace("stage: limited", "stage: beta")
        .replace("blue: 98, green: 2", "blue: 100, green: 0")
    )
    path.write_text(text)
    git(seed, "commit", "-qam", "prod-us at beta")
    git(seed, "push", "-q", "origin", "main")
    return Plan.model_validate({**PLAN, "stages": [BETA_STAGE, *PLAN["stages"]]})  # type: ignore[list-item]


def test_a_beta_rollback_is_one_commit_that_takes_the_cohort_off(remote: Remote) -> None:
    """At beta the weights already say 0%, but the cohort route still reaches the candidate: the
    rollback must still commit (``rolledBack``), not answer "already rolled back"."""
    plan = _at_beta(remote)
    clone = remote.clone("a")
    before = remote.log()
    applier = WorkingTreeApplier(clone)
    outcome = ops(clone, plan).rollback(["prod-us"], reason="beta crash", now=NOW, applier=applier)
    assert outcome.result == "rolled-back"
    assert remote.log() == [outcome.commit, *before]
    text = remote.show("main", "Pulumi.prod-us.yaml")
    state = state_from_text(text, "prod-us")
    assert (state.stage, state.rolled_back, state.cohort_on) == ("beta", True, False)
    assert "    rolledBack: true\n" in text  # one added line, the rest of the file as it was
    assert "# where the rollout is; only the tool writes this block" in text
    message = git(remote.bare, "log", "-1", "--format=%B", "main")
    assert "Rollout-Rolled-Back: true" in message.splitlines()
    assert applier.applied == [("prod-us", {Colour.BLUE: 100, Colour.GREEN: 0})]
    again = ops(clone, plan).rollback(["prod-us"], reason="beta crash", now=NOW)
    assert (again.result, again.commit) == ("already-rolled-back", None)
