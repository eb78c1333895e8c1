"""kill -9 of `rollout rollback --apply --applier pulumi` against a real cluster, then run it again.

The live half of test_crash_recovery.py: the shipped ``local-us-east-1`` stack deployed at green 2%
on the local environment (kube-apiserver with kwok nodes, the Pulumi CLI and Kubernetes provider,
a file backend), the rollout repository a bare remote holding this project. Each trial stops the
real command at a step (the test rig's pause points, tests/crashrig), or kills it as soon as its
``pulumi up`` holds the stack's lock in the file backend (watched on disk), kills the whole process
group, runs the same command again, and checks that main, the clone and the HTTPRoute on the API
server agree on blue 100%, with one rollback commit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gitops_fixtures import git

from devenv.local import EnvInfo
from devenv.pytest_fixtures import local_env, local_env_info
from rollout_policies.gitops.stack_config import read_state, state_from_text
from rollout_policies.state import Colour
from simulator.harness import LocalDeployment

__all__ = ["local_env", "local_env_info"]

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
RIG = Path(__file__).parents[1] / "crashrig"
ROLLOUT = Path(sys.executable).with_name("rollout")
STACK, REGION = "local-us-east-1", "us-east-1"


@pytest.fixture(scope="module")
def deployed(local_env_info: EnvInfo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    deployment = LocalDeployment(local_env_info, tmp_path_factory.mktemp("crash-repo"), ROOT, STACK, REGION)
    yield deployment
    deployment.destroy()


def _stack_locked(env: dict[str, str]) -> bool:
    """Whether ``pulumi up`` holds the stack's lock in the file backend (it takes it to update)."""
    locks = Path(env["PULUMI_BACKEND_URL"].removeprefix("file://")) / ".pulumi" / "locks"
    return any(path.parent.name == STACK for path in locks.rglob("*.json")) if locks.is_dir() else False


@pytest.mark.parametrize("point", ["committed", "pushed", "pulumi-up-running"])
def test_rollback_killed_at_a_step_then_run_again_leaves_git_and_the_cluster_in_agreement(
    deployed: LocalDeployment, tmp_path: Path, point: str
) -> None:
    main_now = state_from_text(git(deployed.remote, "show", f"main:Pulumi.{STACK}.yaml"), STACK)
    if main_now.weights[Colour.GREEN] != 2:  # the previous trial rolled back: green 2% again
        deployed.reset()
    assert deployed.live() == {"blue": 98.0, "green": 2.0}
    seed = git(deployed.remote, "rev-parse", "main").strip()
    paused = tmp_path / "paused"
    env = {**deployed.env, "PYTHONPATH": str(RIG), "ROLLOUT_TEST_LIVE_DIR": str(tmp_path)}
    argv = [
        str(ROLLOUT), "rollback", "--repo", str(deployed.work), "--stack", STACK,
        "--reason", "crash rate beyond alert", "--apply", "--applier", "pulumi",
    ]  # fmt: skip
    first_env = dict(env)
    if point != "pulumi-up-running":
        first_env.update(ROLLOUT_TEST_PAUSE_AT=point, ROLLOUT_TEST_PAUSED=str(paused))
    process = subprocess.Popen(
        argv, env=first_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not (paused.exists() if point != "pulumi-up-running" else _stack_locked(deployed.env)):
        assert process.poll() is None, f"exited {process.returncode} before {point}"
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)

    assert again.returncode == 0, again.stdout + again.stderr
    log = git(deployed.remote, "log", "--format=%H", f"{seed}..main").split()
    assert len(log) == 1  # exactly one rollback commit
    main_text = git(deployed.remote, "show", f"main:Pulumi.{STACK}.yaml")
    main_state = state_from_text(main_text, STACK)
    assert dict(main_state.weights) == {Colour.BLUE: 100, Colour.GREEN: 0}
    assert git(deployed.work, "rev-parse", "HEAD").strip() == log[0]
    assert read_state(deployed.config_path) == main_state
    assert deployed.live() == {"blue": 100.0, "green": 0.0}
    assert list((deployed.work / ".git" / "rollout" / "pending-apply").glob("*.json")) == []
    if point == "pulumi-up-running":
        # kill -9 inside `pulumi up` leaves the stack's lock: the rerun removed it (its holder is dead).
        assert "removed the stale Pulumi lock of stack local-us-east-1 held by dead pid" in again.stderr
