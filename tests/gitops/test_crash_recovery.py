"""kill -9 at every step of `rollout rollback --apply` and `rollout promote`, then run it again.

Each trial runs the shipped console script (``.venv/bin/rollout``) as its own process group against
a real bare remote, stops it at one step, kills the whole group with SIGKILL (as a lost node or the
OOM killer would), and runs the same command again. Every trial must end with git, the remote and the
live weights in agreement, and with exactly one rollback commit (or one promotion commit and one
pull request), whatever step the kill hit.

How a step is reached: ``crashrig/sitecustomize.py`` (test rig only, on the subprocess's PYTHONPATH)
pauses the process at a named point of ``GitRepo.hook`` and tells the test, which then kills it.
Pausing is deterministic; racing a kill against a running process is not.

What "live weights" are here: the rig's ``recording`` applier, registered beside ``pulumi`` in the
applier registry, writes what the working tree says to a file instead of running ``pulumi up`` on a
cluster. The engine's side (record, push, fast-forward, apply, clear) is the real one; the cluster's
side is not exercised by these trials (test_alerting_local_env.py applies to a real API server).
GitHub cannot be reached here: its API is the local stand-in (``forge`` fixture).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gitops_fixtures import Remote, git, write_plan_file

from devenv.forge_standin import ForgeStandIn
from rollout_policies.gitops.stack_config import read_state, state_from_text

RIG = Path(__file__).parents[1] / "crashrig"
ROLLOUT = Path(sys.executable).with_name("rollout")
STACK = "prod-us"
METRICS = "observed_at: 2026-11-20T10:29:00Z\nmetrics:\n  crash_rate: {value: 0.4}\n"


class Trial:
    """One clone, one live-state folder, and the `rollout` command run in its own process group."""

    def __init__(self, remote: Remote, tmp_path: Path, name: str) -> None:
        self.remote = remote
        self.clone = remote.clone(name)
        self.live = tmp_path / f"live-{name}"
        self.live.mkdir()
        self.paused = tmp_path / f"paused-{name}"
        main = state_from_text(remote.show("main", f"Pulumi.{STACK}.yaml"), STACK)
        # The cluster serves what main said before the run.
        (self.live / f"{STACK}.json").write_text(json.dumps({c.value: w for c, w in main.weights.items()}))

    def env(self, pause_at: str | None, extra: dict[str, str]) -> dict[str, str]:
        env = {**os.environ, **extra, "PYTHONPATH": str(RIG), "ROLLOUT_TEST_LIVE_DIR": str(self.live)}
        env.pop("TEST_SLACK_URL", None)
        if pause_at:
            env.update(ROLLOUT_TEST_PAUSE_AT=pause_at, ROLLOUT_TEST_PAUSED=str(self.paused))
        return env

    def kill_at(self, argv: list[str], point: str, extra: dict[str, str]) -> None:
        process = subprocess.Popen(
            [str(ROLLOUT), *argv],
            env=self.env(point, extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while not self.paused.exists():
            if process.poll() is not None:
                out = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"exited {process.returncode} before reaching {point}: {out}")
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        if process.stdout:
            process.stdout.close()

    def run(self, argv: list[str], extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROLLOUT), *argv], env=self.env(None, extra), capture_output=True, text=True, timeout=300
        )

    def live_weights(self) -> dict[str, int]:
        return dict(json.loads((self.live / f"{STACK}.json").read_text()))

    def weights(self, text: str) -> dict[str, int]:
        return {c.value: w for c, w in state_from_text(text, STACK).weights.items()}


ROLLBACK_STEPS = ["committing", "committed", "pushed", "applying"]


@pytest.mark.parametrize(
    ("point", "stale_index_lock"),
    [*((p, False) for p in ROLLBACK_STEPS), ("pushed", True)],
    ids=[*ROLLBACK_STEPS, "pushed-and-killed-inside-git-merge"],
)
def test_rollback_killed_at_any_step_is_finished_by_running_it_again(
    remote: Remote, tmp_path: Path, point: str, stale_index_lock: bool
) -> None:
    trial = Trial(remote, tmp_path, point)
    seed = remote.log()
    argv = [
        "rollback", "--plan", str(write_plan_file(tmp_path)), "--repo", str(trial.clone), "--stack", STACK,
        "--reason", "crash rate beyond alert", "--apply", "--applier", "recording",
        "--now", "2026-11-20T11:00:00Z",
    ]  # fmt: skip
    trial.kill_at(argv, point, {})
    if stale_index_lock:
        # What kill -9 during the fast-forward's `git merge` leaves: its index.lock.
        (trial.clone / ".git" / "index.lock").write_text("")

    again = trial.run(argv, {})

    assert again.returncode == 0, again.stdout + again.stderr
    expected = "rolled-back" if point in ("committing", "committed") else "already-rolled-back"
    assert again.stdout.startswith(f"{expected}: "), again.stdout
    main_text = remote.show("main", f"Pulumi.{STACK}.yaml")
    log = remote.log()
    rollbacks = git(remote.bare, "log", "--format=%H", "--grep=^Rollout-Decision: rollback$", "main").split()
    assert len(log) == len(seed) + 1 and rollbacks == log[:1]  # exactly one rollback commit
    assert trial.weights(main_text) == {"blue": 100, "green": 0}
    # git (the clone's checked-out main), the remote and the live weights agree.
    assert git(trial.clone, "rev-parse", "HEAD").strip() == log[0]
    assert read_state(trial.clone / f"Pulumi.{STACK}.yaml") == state_from_text(main_text, STACK)
    assert trial.live_weights() == {"blue": 100, "green": 0}
    assert not (trial.live / f"{STACK}.json.partial").exists()
    assert list((trial.clone / ".git" / "rollout" / "pending-apply").glob("*.json")) == []
    if stale_index_lock:
        assert "removed stale git lock" in again.stderr


@pytest.mark.parametrize("point", ["pushed", "applying"])
def test_a_pending_apply_is_finished_by_rollout_serve_at_start(
    remote: Remote, tmp_path: Path, point: str
) -> None:
    """The run that finishes need not be the same command: `rollout serve` does it when it starts."""
    trial = Trial(remote, tmp_path, point)
    plan = str(write_plan_file(tmp_path))
    common = ["--plan", plan, "--repo", str(trial.clone), "--stack", STACK, "--applier", "recording"]
    trial.kill_at(
        ["rollback", *common, "--reason", "crash", "--apply", "--now", "2026-11-20T11:00:00Z"], point, {}
    )
    status = trial.run(["status", "--plan", plan, "--repo", str(trial.clone), "--stack", STACK, "--json"], {})
    assert json.loads(status.stdout)[0]["pending_apply"] == remote.log()[0]
    assert trial.live_weights() == {"blue": 98, "green": 2}  # the crash left the cluster behind git

    token = {"ROLLOUT_WEBHOOK_TOKEN": "crash-recovery-token-0123456789"}
    serve = subprocess.Popen(
        [str(ROLLOUT), "serve", *common, "--listen", "127.0.0.1:0"],
        env=trial.env(None, token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stderr is not None
        lines = []
        for line in serve.stderr:
            lines.append(line)
            if "listening on" in line:
                break
        assert serve.poll() is None, "".join(lines)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=60)
    assert any(f"{STACK}: finished the pending apply of {remote.log()[0][:12]}" in line for line in lines)
    assert trial.live_weights() == {"blue": 100, "green": 0}
    assert list((trial.clone / ".git" / "rollout" / "pending-apply").glob("*.json")) == []


PROMOTE_STEPS = ["committing", "committed", "pushed", "opening-pull", "pr_opened"]


@pytest.mark.parametrize("point", PROMOTE_STEPS)
def test_promote_killed_at_any_step_ends_with_one_branch_commit_and_one_pull_request(
    remote: Remote, tmp_path: Path, forge: tuple[str, ForgeStandIn], point: str
) -> None:
    url, standin = forge
    trial = Trial(remote, tmp_path, point)
    main_before = remote.log()
    metrics = tmp_path / "metrics.yaml"
    metrics.write_text(METRICS)
    argv = [
        "promote", "--plan", str(write_plan_file(tmp_path)), "--repo", str(trial.clone), "--stack", STACK,
        "--metrics-file", str(metrics), "--now", "2026-11-20T10:30:00Z",
        "--forge-url", url, "--forge-repo", "markethub/rollout",
        "--reviewer", "DevOps lead=@markethub/devops-leads", "--reviewer", "CTO=@markethub-cto",
    ]  # fmt: skip
    extra = {"GITHUB_TOKEN": "test-token"}
    trial.kill_at(argv, point, extra)

    again = trial.run(argv, extra)

    assert again.returncode == 0, again.stdout + again.stderr
    expected = "proposed" if point in ("committing", "committed") else "already-proposed"
    assert again.stdout.startswith(f"{expected}: "), again.stdout
    branch = "rollout/prod-us/limited-step-1"
    assert remote.log() == main_before  # a promotion never touches main; its merge does
    assert git(remote.bare, "rev-list", "--count", f"main..{branch}").strip() == "1"
    pulls = [p for p in standin.pulls if p.head == branch]
    assert len(pulls) == 1 and len(standin.pulls) == 1
    assert trial.weights(remote.show(branch, f"Pulumi.{STACK}.yaml")) == {"blue": 95, "green": 5}
    # main, the clone and the live weights agree: nothing is live until the pull request merges.
    main_weights = trial.weights(remote.show("main", f"Pulumi.{STACK}.yaml"))
    assert trial.live_weights() == main_weights == {"blue": 98, "green": 2}
    assert (
        read_state(trial.clone / f"Pulumi.{STACK}.yaml").weights
        == state_from_text(remote.show("main", f"Pulumi.{STACK}.yaml"), STACK).weights
    )
