"""Two updates of one stack at once: the up workflow (a merge's push) and the controller (a rollback).

- A checkout that main has moved past never deploys a stack the newer commit changed: that push's own
  run deploys it, and the older one would undo a rollback live (real git repositories).
- Another update holding the stack is waited for, not reported as a failure of this one; anything else
  fails at once (the controller's applier, with the Pulumi stack object replaced by a recorder: the
  real CLI cannot be made to hold a lock on cue).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pulumi import automation as auto

from rollout_policies.cli.deploy_cmd import _superseded
from rollout_policies.gitops import seams
from rollout_policies.gitops.seams import ApplyError, AutomationApplier, concurrent_update

ROOT = Path(__file__).resolve().parents[2]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
        env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    ).stdout.strip()  # fmt: skip


@pytest.fixture
def behind(tmp_path: Path) -> tuple[Path, Path]:
    """(the workflow's checkout of main, a maintainer's clone that pushes after it)."""
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(ROOT, "push", "-q", str(remote), "HEAD:refs/heads/main")
    checkout, other = tmp_path / "checkout", tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(checkout))
    git(tmp_path, "clone", "-q", str(remote), str(other))
    return checkout, other


def push_change(clone: Path, path: str) -> str:
    target = clone / path
    target.write_text(target.read_text() + "# a newer change\n")
    git(clone, "commit", "-qam", f"change {path}")
    git(clone, "push", "-q", "origin", "main")
    return git(clone, "rev-parse", "HEAD")


def test_a_stack_changed_again_on_main_is_left_to_the_newer_run(behind: tuple[Path, Path]) -> None:
    checkout, other = behind
    newer = push_change(other, "Pulumi.prod-us-east-1.yaml")
    assert _superseded(checkout, "prod-us-east-1", "main", "production") == newer
    assert _superseded(checkout, "prod-us-west-2", "main", "production") is None


def test_a_checkout_at_the_tip_or_without_an_origin_deploys(
    behind: tuple[Path, Path], tmp_path: Path
) -> None:
    checkout, _ = behind
    assert _superseded(checkout, "prod-us-east-1", "main", "production") is None
    plain = tmp_path / "plain"
    git(tmp_path, "init", "-q", str(plain))
    assert _superseded(plain, "prod-us-east-1", "main", "production") is None


@pytest.mark.parametrize(
    "text, concurrent",
    [
        ("error: [409] Conflict: Another update is currently in progress.", True),
        ("error: the stack is currently locked by 1 lock(s)", True),
        ("error: failed to load checkpoint: EOF", True),
        ("error: configured Kubernetes cluster is unreachable", False),
        ("error: incorrect passphrase", False),
    ],
)
def test_only_another_update_counts_as_concurrent(text: str, concurrent: bool) -> None:
    error = auto.CommandError(auto.CommandResult(stdout="", stderr=text, code=255))
    assert concurrent_update(error) is concurrent


class HeldStack:
    """A stack whose first ``held`` updates find another update running, then succeed."""

    def __init__(self, held: int, error: str = "error: the stack is currently locked by 1 lock(s)") -> None:
        self.held, self.error, self.ups = held, error, 0

    def export_stack(self) -> object:
        return type("Deployment", (), {"deployment": {"resources": []}})()

    def up(self, **_: object) -> None:
        self.ups += 1
        if self.ups <= self.held:
            raise auto.CommandError(auto.CommandResult(stdout="", stderr=self.error, code=255))


def applier(stack: HeldStack, lock_wait: float, monkeypatch: pytest.MonkeyPatch) -> AutomationApplier:
    monkeypatch.setattr(seams, "LOCK_POLL_SECONDS", 0.01)
    found = AutomationApplier(Path("."), lock_wait=lock_wait)
    monkeypatch.setattr(found, "stack", lambda name: stack)
    monkeypatch.setattr(found, "_cancel_stale_lock", lambda selected, name: False)
    return found


def test_the_rollback_apply_waits_for_another_update_then_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = HeldStack(held=3)
    applier(stack, 30, monkeypatch).apply_traffic("prod-us-east-1")
    assert stack.ups == 4


def test_the_rollback_apply_gives_up_after_its_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = HeldStack(held=10**9)
    with pytest.raises(ApplyError, match="another update held the stack for 0s"):
        applier(stack, 0, monkeypatch).apply_traffic("prod-us-east-1")


def test_any_other_failure_of_the_apply_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = HeldStack(held=1, error="error: incorrect passphrase")
    with pytest.raises(ApplyError, match="incorrect passphrase"):
        applier(stack, 30, monkeypatch).apply_traffic("prod-us-east-1")
    assert stack.ups == 1
