"""Git faults, one row each: a hostile repository state and what `rollout rollback` makes of it.

Every row runs a real rollback (``GitOps.rollback`` with a working-tree applier, or the ``rollout
rollback`` command) against a real bare remote and a real clone. A row either recovers (the rollback
lands once, is applied, and the recovery is logged) or fails with one line that names the cause.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from gitops_fixtures import STACK_CONFIG, T0, Remote, git, write_plan_file

from rollout_policies.cli.main import main
from rollout_policies.errors import UserError
from rollout_policies.gitops.engine import GitOps
from rollout_policies.gitops.repo import GitRepo, RetryPolicy
from rollout_policies.gitops.stack_config import read_state, state_from_text
from rollout_policies.plan.model import Plan
from rollout_policies.state import Colour

NOW = T0 + timedelta(hours=2)
STABLE = {Colour.BLUE: 100, Colour.GREEN: 0}
QUICK = RetryPolicy(attempts=3, seconds=10, first_wait=0.05)


class Applier:
    """Records the weights in the clone's working tree at apply time (what ``pulumi up`` reads)."""

    def __init__(self, clone: Path) -> None:
        self.clone = clone
        self.applied: list[tuple[str, dict[Colour, int]]] = []

    def apply_traffic(self, stack: str) -> None:
        self.applied.append((stack, dict(read_state(self.clone / f"Pulumi.{stack}.yaml").weights)))


def aged(path: Path, seconds: float = 120) -> Path:
    """A file as a git process killed ``seconds`` ago leaves it: empty, with an old mtime."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


@pytest.fixture
def holder() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """A live git process working in a repository (waiting on its stdin), as a running `git add` is."""
    started: list[subprocess.Popen[bytes]] = []

    def start(cwd: Path) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(["git", "hash-object", "--stdin"], cwd=cwd, stdin=subprocess.PIPE)
        started.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until /proc shows it in the repository
            try:
                if Path(os.readlink(f"/proc/{process.pid}/cwd")) == cwd.resolve():
                    break
            except OSError:
                pass
            time.sleep(0.01)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


@dataclass(frozen=True)
class Fault:
    id: str
    setup: Callable[[Remote, Path], None]
    # None: the rollback recovers; else a regex the one-line error must match
    error: str | None = None
    # recovered rows: a regex the logs must match (the recovery is logged)
    logged: str | None = None


def _lock(relative: str) -> Callable[[Remote, Path], None]:
    def setup(remote: Remote, clone: Path) -> None:
        aged(clone / ".git" / relative)

    return setup


def _young_lock(remote: Remote, clone: Path) -> None:
    (clone / ".git" / "index.lock").write_text("")


def _hook(remote: Remote, clone: Path) -> None:
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text('#!/bin/sh\necho "main is frozen for the 5.0 release (ask #release)" >&2\nexit 1\n')
    hook.chmod(0o755)


def _server_ref_lock(remote: Remote, clone: Path) -> None:
    (remote.bare / "refs" / "heads" / "main.lock").write_text("")


def _no_remote(remote: Remote, clone: Path) -> None:
    git(clone, "remote", "set-url", "origin", str(remote.root / "gone.git"))


def _push_stack(remote: Remote, text: str) -> None:
    seed = remote.root / "seed"
    git(seed, "pull", "-q", "origin", "main")
    with (seed / "Pulumi.prod-us.yaml").open("w", newline="") as stream:
        stream.write(text)
    git(seed, "commit", "-q", "-am", "stack edited by hand")
    git(seed, "push", "-q", "origin", "main")


def _alias_bomb(remote: Remote, clone: Path) -> None:
    bomb = ["  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 6)]
    text = STACK_CONFIG.replace("config:\n", "config:\n" + "\n".join(bomb) + "\n", 1)
    text = text.replace("    step: 0  ", "    extra: *a5\n    step: 0  ")
    _push_stack(remote, text)


FAULTS = [
    Fault("stale-index-lock", _lock("index.lock"), logged=r"removed stale git lock .*/\.git/index\.lock"),
    Fault(
        "stale-tracking-ref-lock",
        _lock("refs/remotes/origin/main.lock"),
        logged=r"removed stale git lock .*/refs/remotes/origin/main\.lock",
    ),
    Fault(
        "stale-branch-ref-lock", _lock("refs/heads/main.lock"), logged=r"removed stale git lock .*main\.lock"
    ),
    Fault(
        "young-lock-no-process",
        _young_lock,
        error=r"^--apply: .* differs from origin/main \(git merge: lock file .*/\.git/index\.lock exists "
        r"\(\d+s old; no git process is running here; it is removed once 5s old\) "
        r"\(gave up after 3 tries\)\)",
    ),
    Fault(
        "server-hook-declines",
        _hook,
        error=r"^git push: the remote refused main \(pre-receive hook declined\): "
        r"main is frozen for the 5\.0 release \(ask #release\)$",
    ),
    Fault(
        "server-ref-lock",
        _server_ref_lock,
        error=r"^git push: the remote refused main \(failed to update ref\): error: cannot lock ref "
        r"'refs/heads/main'.*\(gave up after 3 tries\)$",
    ),
    Fault(
        "remote-gone",
        _no_remote,
        error=r"^git fetch --prune: fatal: '.*gone\.git' does not appear to be a git repository$",
    ),
    Fault(
        "stack-config-alias-bomb",
        _alias_bomb,
        error=r"^Pulumi\.prod-us\.yaml: config\.markethub-rollout:rollout: more than 10000 values once "
        r"aliases are expanded$",
    ),
    Fault(
        "stack-config-not-yaml",
        lambda remote, clone: _push_stack(remote, "config:\n  markethub-rollout:rollout: {stage: [\n"),
        error=r"^Pulumi\.prod-us\.yaml:\d+: not valid YAML",
    ),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_git_fault(remote: Remote, plan: Plan, fault: Fault, caplog: pytest.LogCaptureFixture) -> None:
    clone = remote.clone("a")
    fault.setup(remote, clone)
    before = remote.log()
    applier = Applier(clone)
    ops = GitOps(repo=GitRepo(clone, retry=QUICK), plan=plan, actor="oncall@laptop")
    with caplog.at_level(logging.WARNING, logger="rollout.gitops"):
        if fault.error is not None:
            with pytest.raises(UserError) as raised:
                ops.rollback(["prod-us"], reason="crash rate", now=NOW, applier=applier)
            message = str(raised.value)
            assert "\n" not in message
            assert "kept moving" not in message
            assert re.search(fault.error, message), message
            return
        outcome = ops.rollback(["prod-us"], reason="crash rate", now=NOW, applier=applier)
    assert outcome.result == "rolled-back"
    assert remote.log() == [outcome.commit, *before]
    assert applier.applied == [("prod-us", STABLE)]
    assert fault.logged is not None
    assert re.search(fault.logged, caplog.text), caplog.text


def test_a_lock_held_by_a_live_git_process_is_never_removed(
    remote: Remote, plan: Plan, holder: Callable[[Path], subprocess.Popen[bytes]]
) -> None:
    """Old enough to look stale, but its holder is alive: the rollback stops, naming the holder."""
    clone = remote.clone("a")
    lock = aged(clone / ".git" / "index.lock")
    process = holder(clone)
    ops = GitOps(repo=GitRepo(clone, retry=QUICK), plan=plan, actor="oncall@laptop")
    with pytest.raises(UserError, match=rf"git process {process.pid} is working in this repository"):
        ops.rollback(["prod-us"], reason="crash rate", now=NOW, applier=Applier(clone))
    assert lock.exists()
    # The holder finishes (and git removes its lock): the next run applies what main already holds.
    process.kill()
    process.wait(timeout=10)
    lock.unlink()
    applier = Applier(clone)
    again = ops.rollback(["prod-us"], reason="crash rate", now=NOW, applier=applier)
    assert again.result == "already-rolled-back"
    assert applier.applied == [("prod-us", STABLE)]


def test_the_servers_lock_is_never_touched(remote: Remote, plan: Plan) -> None:
    """The lock in the remote is the server's: refused, reported, and left where it is."""
    clone = remote.clone("a")
    _server_ref_lock(remote, clone)
    ops = GitOps(repo=GitRepo(clone, retry=QUICK), plan=plan, actor="oncall@laptop")
    with pytest.raises(UserError, match="the remote refused main"):
        ops.rollback(["prod-us"], reason="crash rate", now=NOW)
    assert (remote.bare / "refs" / "heads" / "main.lock").exists()


def test_a_crlf_stack_config_keeps_its_line_endings_and_only_the_changed_lines_move(
    remote: Remote, plan: Plan
) -> None:
    _push_stack(remote, STACK_CONFIG.replace("\n", "\r\n"))
    clone = remote.clone("a")
    before = subprocess.run(
        ["git", "-C", str(remote.bare), "show", "main:Pulumi.prod-us.yaml"], capture_output=True, check=True
    ).stdout
    GitOps(repo=GitRepo(clone, retry=QUICK), plan=plan).rollback(["prod-us"], reason="crash", now=NOW)
    diff = git(remote.bare, "diff", "--numstat", "main~1", "main", "--", "Pulumi.prod-us.yaml")
    after = subprocess.run(
        ["git", "-C", str(remote.bare), "show", "main:Pulumi.prod-us.yaml"], capture_output=True, check=True
    ).stdout
    assert before.count(b"\r\n") == STACK_CONFIG.count("\n")
    assert after.count(b"\r\n") == before.count(b"\r\n") + 1  # the added rolledBack line, CRLF too
    assert b"    rolledBack: true\r\n" in after
    assert b"\n" not in after.replace(b"\r\n", b"")
    # rolledBack added; weights, stageStartedAt and stepStartedAt changed: nothing else rewritten
    assert diff.split()[:2] == ["4", "3"]
    assert b"{blue: 100, green: 0}\r\n" in after


ALIASED = """\
config:
  markethub-rollout:region: us-east-1
  markethub-rollout:stableImage: &stable {colour: blue, version: 4.12.0}
  markethub-rollout:rollout:
    <<: {stage: limited}
    step: &first 1
    stable: *stable
    candidate: &candidate {colour: green, version: "5.0"}
    weights: {blue: 95, green: 5}
    stageStartedAt: &started "2026-11-20T09:00:00Z"
    stepStartedAt: *started
  markethub-rollout:candidateImage: *candidate
"""


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_a_rollout_block_with_anchors_aliases_and_a_merge_key_rolls_back_resolved(
    remote: Remote, plan: Plan, crlf: bool
) -> None:
    _push_stack(remote, ALIASED.replace("\n", "\r\n") if crlf else ALIASED)
    clone = remote.clone("a")
    applier = Applier(clone)
    outcome = GitOps(repo=GitRepo(clone, retry=QUICK), plan=plan).rollback(
        ["prod-us"], reason="crash", now=NOW, applier=applier
    )
    assert outcome.result == "rolled-back"
    raw = subprocess.run(
        ["git", "-C", str(remote.bare), "show", "main:Pulumi.prod-us.yaml"], capture_output=True, check=True
    ).stdout.decode()
    state = state_from_text(raw, "Pulumi.prod-us.yaml")
    assert (state.stage, state.step, dict(state.weights)) == ("limited", 0, STABLE)
    block = raw[raw.index("markethub-rollout:rollout:") : raw.index("markethub-rollout:candidateImage")]
    assert not any(mark in block for mark in ("&", "*", "<<"))
    # The keys outside the block that used the block's anchors keep their values.
    assert "markethub-rollout:candidateImage: {colour: green, version: '5.0'}" in raw.replace('"', "'")
    assert ("\r\n" in raw) is crlf and ("\n" not in raw.replace("\r\n", "")) is crlf
    assert applier.applied == [("prod-us", STABLE)]


def test_the_rollback_command_reports_a_refused_push_in_one_line(
    remote: Remote, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clone = remote.clone("a")
    _hook(remote, clone)
    argv = [
        "rollback", "--plan", str(write_plan_file(tmp_path)), "--repo", str(clone), "--stack", "prod-us",
        "--reason", "crash rate", "--now", NOW.isoformat(),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.splitlines() == [
        "rollout: error: git push: the remote refused main (pre-receive hook declined): "
        "main is frozen for the 5.0 release (ask #release)"
    ]
