"""Git through its command line: read files at a ref, make one commit without a checkout, push safely.

Commits are built with plumbing (a private index, ``commit-tree``) on top of the remote's branch, so
a promotion never touches the user's working tree and a failure leaves no branch behind. Pushes are
compare-and-swap (``--force-with-lease`` with the expected old value): when two runs race, exactly
one push lands and the other gets ``PushRejected``, fetches and re-evaluates.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from rollout_policies import envvars
from rollout_policies.errors import UserError

# Errors a second try may fix: the network, the remote's load, another git process's lock.
_TRANSIENT = re.compile(
    r"Could not resolve host|Connection (reset|refused|timed out)|timed out|early EOF|"
    r"the remote end hung up|unable to access|RPC failed|index\.lock|cannot lock ref|"
    r"Temporary failure|503|502|504",
    re.IGNORECASE,
)
_REJECTED = re.compile(r"\[rejected\]|\[remote rejected\]|stale info|non-fast-forward|fetch first", re.I)


class GitError(UserError):
    """A git command failed for a reason retrying will not fix."""


class TransientGitError(Exception):
    """A git command failed for a reason that may pass (network, lock); retried, then a GitError."""


class PushRejected(Exception):
    """The remote branch moved since we read it: another run won the race."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for transient failures: at most ``attempts`` tries within ``seconds``."""

    attempts: int = 5
    seconds: float = 60.0
    first_wait: float = 0.5
    max_wait: float = 8.0

    def retrying(self, kind: type[BaseException]) -> Retrying:
        return Retrying(
            retry=retry_if_exception_type(kind),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.seconds),
            wait=wait_exponential(multiplier=self.first_wait, max=self.max_wait),
            reraise=True,
        )


@dataclass(frozen=True)
class Identity:
    """Who a commit is by. Defaults come from git's own configuration."""

    name: str
    email: str


@dataclass
class GitRepo:
    """A local clone with a remote. ``hook`` is called at named points (tests inject crashes there)."""

    path: Path
    remote: str = "origin"
    main: str = "main"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    hook: Callable[[str], None] = lambda point: None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not (self.path / ".git").exists() and not self._is_repo():
            raise UserError(f"--repo {self.path}: not a git repository")

    def _is_repo(self) -> bool:
        done = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "--git-dir"], capture_output=True, text=True
        )
        return done.returncode == 0

    # -- running git -------------------------------------------------------------------------------

    def git(self, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None) -> str:
        """Run git once; transient failures raise TransientGitError, others GitError."""
        full_env = {**git_environment(os.environ), **(env or {})}
        done = subprocess.run(
            ["git", "-C", str(self.path), *args],
            capture_output=True,
            text=True,
            env=full_env,
            input=stdin,
        )
        if done.returncode != 0:
            message = (done.stderr.strip() or done.stdout.strip()).splitlines()
            text = message[-1] if message else f"exit status {done.returncode}"
            if _REJECTED.search(done.stderr + done.stdout):
                raise PushRejected(text)
            if _TRANSIENT.search(done.stderr):
                raise TransientGitError(f"git {args[0]}: {text}")
            raise GitError(f"git {' '.join(args[:2])}: {text}")
        return done.stdout

    def _retried(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        try:
            for attempt in self.retry.retrying(TransientGitError):
                with attempt:
                    return self.git(*args, env=env)
        except TransientGitError as err:
            raise GitError(f"{err} (gave up after {self.retry.attempts} tries)") from None
        raise AssertionError("unreachable")

    # -- reading -----------------------------------------------------------------------------------

    def fetch(self) -> None:
        """Bring the remote's branches up to date, pruning deleted ones."""
        self._retried("fetch", "--prune", "--quiet", self.remote)

    def remote_ref(self, branch: str) -> str:
        return f"refs/remotes/{self.remote}/{branch}"

    def sha(self, ref: str) -> str | None:
        try:
            return self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip() or None
        except GitError:
            return None

    def show(self, ref: str, path: str) -> str | None:
        """A file's text at a ref, or None when the file is not there."""
        try:
            return self.git("show", f"{ref}:{path}")
        except GitError:
            return None

    def remote_branches(self, prefix: str) -> dict[str, str]:
        """Remote-tracking branches under a prefix (``rollout/prod-us/``), name -> sha."""
        refs = f"refs/remotes/{self.remote}/{prefix}"
        out = self.git("for-each-ref", "--format=%(objectname) %(refname)", refs)
        found = {}
        strip = f"refs/remotes/{self.remote}/"
        for line in out.splitlines():
            sha, ref = line.split(" ", 1)
            found[ref[len(strip) :]] = sha
        return found

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        done = subprocess.run(
            ["git", "-C", str(self.path), "merge-base", "--is-ancestor", ancestor, descendant],
            capture_output=True,
        )
        return done.returncode == 0

    def changed_files(self, base: str, head: str) -> tuple[str, ...]:
        return tuple(self.git("diff", "--name-only", f"{base}...{head}").split())

    def trailers(self, ref: str, path: str | None = None, limit: int = 50) -> list[Commit]:
        """Commits reachable from ref (touching path), newest first, with their trailers."""
        fmt = "%H%x1f%an <%ae>%x1f%cI%x1f%s%x1f%(trailers:unfold,only)%x1e"
        args = ["log", f"-{limit}", f"--format={fmt}", ref]
        if path:
            args += ["--", path]
        try:
            out = self.git(*args)
        except GitError:
            return []
        commits = []
        for record in out.split("\x1e"):
            record = record.strip("\n")
            if not record:
                continue
            sha, author, when, subject, trailer_text = record.split("\x1f")
            pairs: list[tuple[str, str]] = []
            for line in trailer_text.splitlines():
                if ":" in line:
                    key, value = line.split(":", 1)
                    pairs.append((key.strip(), value.strip()))
            commits.append(Commit(sha, author, when, subject, tuple(pairs)))
        return commits

    # -- writing -----------------------------------------------------------------------------------

    def commit_files(
        self,
        parent: str,
        files: Mapping[str, str],
        message: str,
        *,
        identity: Identity | None = None,
        when: str | None = None,
    ) -> str:
        """One commit on top of ``parent`` that sets these files' contents; returns its sha.

        No checkout, no branch: the commit exists only as an object until it is pushed, so a crash
        before the push leaves nothing to clean up.
        """
        env: dict[str, str] = {}
        if identity is not None:
            env.update(
                GIT_AUTHOR_NAME=identity.name,
                GIT_AUTHOR_EMAIL=identity.email,
                GIT_COMMITTER_NAME=identity.name,
                GIT_COMMITTER_EMAIL=identity.email,
            )
        if when is not None:
            env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
        with tempfile.TemporaryDirectory(prefix="rollout-index-") as scratch:
            env["GIT_INDEX_FILE"] = str(Path(scratch) / "index")
            self.git("read-tree", parent, env=env)
            for path, text in files.items():
                blob = self.git("hash-object", "-w", "--stdin", "--path", path, stdin=text).strip()
                self.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = self.git("write-tree", env=env).strip()
            sha = self.git("commit-tree", tree, "-p", parent, "-F", "-", env=env, stdin=message).strip()
        self.hook("committed")
        return sha

    def push(self, sha: str, branch: str, *, expect: str | None) -> None:
        """Set the remote branch to ``sha`` only if it is still at ``expect`` (None: must not exist).

        The lease is the race guard: without it a second run would overwrite the first one's commit.
        """
        lease = f"--force-with-lease=refs/heads/{branch}:{expect or ''}"
        self._retried("push", "--porcelain", "--quiet", lease, self.remote, f"{sha}:refs/heads/{branch}")
        self.hook("pushed")

    def delete_remote_branch(self, branch: str, *, expect: str) -> None:
        lease = f"--force-with-lease=refs/heads/{branch}:{expect}"
        self._retried("push", "--porcelain", "--quiet", lease, self.remote, f":refs/heads/{branch}")

    def fast_forward_checkout(self, branch: str) -> bool:
        """Move a checked-out, clean ``branch`` to its remote-tracking branch; False when it cannot.

        After a rollback lands, the working tree an applier reads from must say what git says.
        """
        try:
            current = self.git("symbolic-ref", "--quiet", "--short", "HEAD").strip()
        except GitError:
            return False
        if current != branch:
            return False
        try:
            self.git("merge", "--ff-only", "--quiet", self.remote_ref(branch))
        except (GitError, PushRejected):
            return False
        return True

    def identity(self) -> Identity:
        def config(key: str, default: str) -> str:
            try:
                return self.git("config", key).strip() or default
            except GitError:
                return default

        return Identity(config("user.name", "rollout"), config("user.email", "rollout@localhost"))


def _credential_helper(username: str) -> str:
    """A git credential helper answering from the environment: the token is read by the shell git
    starts (``$ROLLOUT_GIT_TOKEN``), so it never reaches a command line, a file or git's configuration.
    Git runs a helper that starts with "!" through the shell."""
    return (
        '!f() { test "$1" = get || exit 0; '
        f'printf "username=%s\\npassword=%s\\n" {shlex.quote(username)} "${envvars.GIT_TOKEN}"; }}; f'
    )


def git_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment git runs in: no prompts, C messages, and the token as an https credential.

    When ``ROLLOUT_GIT_TOKEN`` is set (the controller's git Secret), git asks the helper above for
    https credentials; it is added after any ``GIT_CONFIG_*`` entries already in the environment.
    """
    env = {**environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    if environ.get(envvars.GIT_TOKEN):
        count = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
        env.update(
            {
                "GIT_CONFIG_COUNT": str(count + 1),
                f"GIT_CONFIG_KEY_{count}": "credential.helper",
                f"GIT_CONFIG_VALUE_{count}": _credential_helper(
                    environ.get(envvars.GIT_USERNAME) or envvars.DEFAULT_GIT_USERNAME
                ),
            }
        )
    return env


def clone(url: str, path: Path, *, branch: str, retry: RetryPolicy | None = None) -> None:
    """Clone ``url`` into ``path`` (a pod's empty volume) with ``branch`` checked out.

    The clone gets a commit identity of its own (a container has no git configuration), and a
    failure leaves no half-made clone behind.
    """
    identity = Identity("rollout", "rollout@localhost")
    partial = path.with_name(path.name + ".partial")
    command = [
        "git",
        "clone",
        "--quiet",
        "--branch",
        branch,
        "--config",
        f"user.name={identity.name}",
        "--config",
        f"user.email={identity.email}",
        url,
        str(partial),
    ]
    policy = retry or RetryPolicy()

    def attempt() -> None:
        shutil.rmtree(partial, ignore_errors=True)
        done = subprocess.run(command, capture_output=True, text=True, env=git_environment(os.environ))
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            text = lines[-1] if lines else f"exit status {done.returncode}"
            if _TRANSIENT.search(done.stderr) and "Authentication failed" not in done.stderr:
                raise TransientGitError(f"git clone: {text}")
            raise GitError(f"--clone-from: git clone of branch {branch}: {text}")

    try:
        for retrying in policy.retrying(TransientGitError):
            with retrying:
                attempt()
    except TransientGitError as err:
        raise GitError(f"--clone-from: {err} (gave up after {policy.attempts} tries)") from None
    partial.replace(path)


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    committed_at: str
    subject: str
    trailers: tuple[tuple[str, str], ...]

    def trailer(self, key: str) -> str | None:
        for name, value in self.trailers:
            if name.lower() == key.lower():
                return value
        return None

    def trailer_values(self, key: str) -> list[str]:
        return [value for name, value in self.trailers if name.lower() == key.lower()]


def commit_message(subject: str, body: Sequence[str], trailers: Sequence[tuple[str, str]]) -> str:
    """A commit message: subject, blank line, body, blank line, ``Key: value`` trailers git can parse."""
    lines = [subject, ""]
    if body:
        lines += [*body, ""]
    lines += [f"{key}: {' '.join(value.split())}" for key, value in trailers]
    return "\n".join(lines) + "\n"
