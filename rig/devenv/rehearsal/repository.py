"""The rehearsal's rollout repository: a bare remote (standing for GitHub), merges, pushes, state on main."""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rollout_policies.errors import UserError
from rollout_policies.gitops.stack_config import config_name, state_from_text
from rollout_policies.state import RolloutState


class RepositoryError(UserError):
    """A git step of the rehearsal failed."""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["failed"]
        raise RepositoryError(f"git {' '.join(args[:2])} in {cwd}: {detail[0]}")
    return done.stdout.strip()


@dataclass
class Repository:
    """The bare remote and a maintainer's clone (merges pull requests, reads main)."""

    remote: Path
    work: Path

    @classmethod
    def create(cls, source: Path, run_dir: Path) -> Repository:
        remote, work = run_dir / "remote.git", run_dir / "maintainer"
        git(run_dir, "init", "-q", "--bare", "-b", "main", str(remote))
        git(source, "push", "-q", str(remote), "HEAD:refs/heads/main")
        git(run_dir, "clone", "-q", str(remote), str(work))
        git(work, "config", "user.email", "rehearsal@markethub.local")
        git(work, "config", "user.name", "markethub rehearsal")
        return cls(remote, work)

    def head(self) -> str:
        return git(self.remote, "rev-parse", "main")

    def checkout(self, target: Path, name: str = "runner") -> Path:
        """A fresh clone of main with all history (``actions/checkout`` with ``fetch-depth: 0``)."""
        git(target.parent, "clone", "-q", str(self.remote), str(target))
        git(target, "config", "user.email", f"{name}@markethub.local")
        git(target, "config", "user.name", f"rehearsal {name}")
        return target

    def commit_all(self, message: str) -> str:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-qm", message)
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")

    def merge(self, branch: str, title: str, number: int) -> str | None:
        """Merge a pull request's branch into main as GitHub's merge button does; delete the branch.
        None when the branch conflicts with main (GitHub would not offer the merge)."""
        git(self.work, "fetch", "-q", "origin")
        git(self.work, "checkout", "-q", "main")
        git(self.work, "reset", "-q", "--hard", "origin/main")
        try:
            git(
                self.work,
                "merge",
                "-q",
                "--no-ff",
                f"origin/{branch}",
                "-m",
                f"Merge pull request #{number}: {title}",
            )
        except RepositoryError:
            # GitHub's "This branch has conflicts that must be resolved": nothing is merged.
            subprocess.run(["git", "merge", "--abort"], cwd=self.work, capture_output=True, check=False)
            return None
        git(self.work, "push", "-q", "origin", "main", f":{branch}")
        return git(self.work, "rev-parse", "HEAD")

    def state(self, stack: str, ref: str = "main") -> RolloutState:
        path = config_name(stack)
        return state_from_text(git(self.remote, "show", f"{ref}:{path}"), path)

    def history(self, stack: str, since: str) -> list[tuple[str, RolloutState]]:
        """(commit, state) of the stack on main after each commit that touched its config, oldest first."""
        path = config_name(stack)
        commits = git(
            self.remote, "log", "--first-parent", "--reverse", "--format=%H", f"{since}..main", "--", path
        )
        return [(commit, self.state(stack, commit)) for commit in commits.split()]

    def changed(self, before: str, after: str) -> list[str]:
        return git(self.remote, "diff", "--name-only", before, after).splitlines()

    def commits(self, before: str, after: str) -> list[tuple[str, str, str, datetime]]:
        """(hash, author, subject, time) of the commits on main after ``before``, oldest first."""
        log = git(self.remote, "log", "--reverse", "--format=%H%x1f%an%x1f%s%x1f%cI", f"{before}..{after}")
        rows = []
        for line in log.splitlines():
            commit, author, subject, when = line.split("\x1f")
            rows.append((commit, author, subject, datetime.fromisoformat(when)))
        return rows


def matches_paths(changed: list[str], patterns: list[str]) -> bool:
    """GitHub's ``on.push.paths`` filter (``*`` within a folder, ``**`` across folders)."""
    for name in changed:
        for pattern in patterns:
            regex = fnmatch.translate(pattern.replace("**", "\0")).replace("\0", ".*")
            if fnmatch.fnmatch(name, pattern) or __import__("re").match(regex, name):
                return True
    return False
