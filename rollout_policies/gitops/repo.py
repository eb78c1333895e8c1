"""Git through its command line: read files at a ref, make one commit without a checkout, push safely.

Commits are built with plumbing (a private index, ``commit-tree``) on top of the remote's branch, so
a promotion never touches the user's working tree and a failure leaves no branch behind. Pushes are
compare-and-swap (``--force-with-lease`` with the expected old value): when two runs race, exactly
one push lands and the other gets ``PushRejected``, fetches and re-evaluates. A push the server
refuses for another reason (a hook, a lock) is a ``GitError`` carrying the server's own words.

A lock file that a killed git process left behind (``index.lock``, a ref's ``.lock``) is named in the
error; once it is older than ``stale_lock_after`` and no git process is working in the repository,
it is removed (and the removal logged), and the command runs again.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
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
    # HTTP 502-504 only as git reports them ("The requested URL returned error: 503"): a bare "502"
    # also matches inside object ids, which made `git show` of a missing file look transient.
    r"Temporary failure|returned error: 50[234]\b",
    re.IGNORECASE,
)
# A lock file named in git's error: "Unable to create '<path>.lock': File exists" (index, refs,
# packed-refs, HEAD) or "could not lock config file <path>: File exists".
_LOCK_FILE = re.compile(
    r"Unable to create '([^']+\.lock)': File exists|could not lock config file (\S+): File exists"
)
# A server-side refusal that means "someone else is updating this ref right now": worth a retry.
_REMOTE_LOCKED = re.compile(r"failed to lock|cannot lock ref|Unable to create|failed to update ref", re.I)
# A server-side refusal that means "the ref is not where your lease said": the race, not a refusal.
_REMOTE_MOVED = re.compile(r"but expected|stale info|non-fast-forward|fetch first", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]|\x1b\[[0-9;]*[A-Za-z]")
# A lock younger than this may belong to a git process we cannot see (another container on the same
# volume): only older ones are removed. Git holds its locks for milliseconds on a config repository.
STALE_LOCK_AFTER = 5.0

log = logging.getLogger("rollout.gitops")


class GitError(UserError):
    """A git command failed for a reason retrying will not fix."""


class TransientGitError(Exception):
    """A git command failed for a reason that may pass (network, lock); retried, then a GitError."""


class LockHeld(TransientGitError):
    """A git lock file exists and is not (yet) known to be stale; retried, then a GitError naming it."""


class PushRejected(Exception):
    """The remote branch moved since we read it: another run won the race."""


def _one_line(text: str, limit: int = 300) -> str:
    """Server text as one printable line (hooks may send colours, several lines, anything)."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _push_failure(args: Sequence[str], stdout: str, stderr: str) -> Exception | None:
    """What a failed ``push --porcelain`` means: the race (PushRejected), a refusal (GitError), a lock.

    The porcelain line ``!\t<src>:<dst>\t[remote rejected] (<reason>)`` names the ref and git's reason;
    the ``remote:`` lines on stderr are the server's (a hook's) own words. The ``error: failed to push
    some refs to '<url>'`` line is left out: the URL may hold credentials.
    """
    for line in stdout.splitlines():
        if not line.startswith("!"):
            continue
        fields = line.split("\t")
        ref = fields[1].rsplit(":", 1)[-1].removeprefix("refs/heads/") if len(fields) > 1 else "?"
        summary = fields[2] if len(fields) > 2 else line
        reason = summary[summary.find("(") + 1 : summary.rfind(")")] if "(" in summary else summary
        if "[remote rejected]" not in summary:
            if _REMOTE_MOVED.search(summary):
                return PushRejected(summary)
            return GitError(f"git push: {ref} refused: {_one_line(summary)}")
        said = [
            text
            for raw in stderr.splitlines()
            if raw.startswith("remote:") and (text := _one_line(raw[len("remote:") :]))
        ]
        server = f": {_one_line(' / '.join(said))}" if said else ""
        message = f"git push: the remote refused {ref} ({_one_line(reason)}){server}"
        if _REMOTE_MOVED.search(reason):
            return PushRejected(message)
        if _REMOTE_LOCKED.search(reason):
            return TransientGitError(message)
        return GitError(message)
    return None


def _live_git_processes(roots: Sequence[Path]) -> list[int]:
    """Pids of git processes whose working directory is inside one of ``roots`` (Linux ``/proc``).

    ``git -C <repo>`` changes into the repository, so its cwd says which repository it works on. A
    process we may not inspect (another user's) is not ours. Without ``/proc`` nothing is found and the
    lock's age alone decides.
    """
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    resolved = [root.resolve() for root in roots]
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            name = (entry / "comm").read_text().strip()
            if name != "git" and not name.startswith("git-"):
                continue
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if any(cwd == root or root in cwd.parents for root in resolved):
            found.append(int(entry.name))
    return found


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
    """A local clone with a remote. ``hook`` is called at named points (tests inject crashes there):
    ``committing``, ``committed``, ``pushed`` here; ``applied`` and ``pr_opened`` in the engine."""

    path: Path
    remote: str = "origin"
    main: str = "main"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    hook: Callable[[str], None] = lambda point: None
    stale_lock_after: float = STALE_LOCK_AFTER
    # Why the last fast_forward_checkout could not move the working tree (for the apply's error).
    last_checkout_problem: str | None = field(default=None, init=False)

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
        """Run git once; transient failures raise TransientGitError, others GitError.

        Output is decoded as it is, without newline translation, so a file read with ``show`` keeps
        its CRLF line endings. A stale lock file in the way is removed and the command run again.
        """
        full_env = {**git_environment(os.environ), **(env or {})}
        removed: set[Path] = set()
        while True:
            done = subprocess.run(
                ["git", "-C", str(self.path), *args],
                capture_output=True,
                env=full_env,
                input=stdin.encode("utf-8") if stdin is not None else None,
            )
            stdout = done.stdout.decode("utf-8", errors="replace")
            if done.returncode == 0:
                return stdout
            stderr = done.stderr.decode("utf-8", errors="replace")
            lock = self._lock_in(stderr)
            if lock is not None and lock not in removed and self._remove_if_stale(lock):
                removed.add(lock)
                continue
            raise self._failure(args, stdout, stderr, done.returncode, lock)

    def _failure(
        self, args: Sequence[str], stdout: str, stderr: str, code: int, lock: Path | None
    ) -> Exception:
        lines = [line for line in (stderr.strip() or stdout.strip()).splitlines() if line.strip()]
        # git's first "fatal:"/"error:" line says what went wrong; the lines after it are advice.
        first = next((line for line in lines if line.startswith(("fatal:", "error:"))), None)
        text = _one_line(first or lines[-1]) if lines else f"exit status {code}"
        if lock is not None:
            return LockHeld(f"git {args[0]}: {self._describe_lock(lock)}")
        if args[0] == "push":
            refused = _push_failure(args, stdout, stderr)
            if refused is not None:
                return refused
        if _TRANSIENT.search(stderr):
            return TransientGitError(f"git {args[0]}: {text}")
        return GitError(f"git {' '.join(args[:2])}: {text}")

    # -- lock files --------------------------------------------------------------------------------

    def git_dir(self) -> Path:
        """The repository's common git directory (where refs, locks and our own state live)."""
        done = subprocess.run(
            ["git", "-C", str(self.path), "rev-parse", "--path-format=absolute", "--git-common-dir"],
            capture_output=True,
            text=True,
        )
        return Path(done.stdout.strip() or self.path / ".git")

    def _lock_in(self, stderr: str) -> Path | None:
        """The lock file of THIS repository that git's error names; a server's lock is not ours."""
        for line in stderr.splitlines():
            if line.startswith("remote:"):
                continue
            match = _LOCK_FILE.search(line)
            if match is None:
                continue
            named = Path(match.group(1) or match.group(2))
            path = (named if named.is_absolute() else self.path / named).resolve()
            roots = (self.git_dir().resolve(), self.path.resolve())
            if any(root == path.parent or root in path.parents for root in roots):
                return path
        return None

    def _describe_lock(self, lock: Path) -> str:
        try:
            age = f"{time.time() - lock.stat().st_mtime:.0f}s old"
        except OSError:
            return f"{lock} was in the way (now gone)"
        pids = _live_git_processes((self.path, self.git_dir()))
        who = (
            f"git process {', '.join(map(str, pids))} is working in this repository"
            if pids
            else f"no git process is running here; it is removed once {self.stale_lock_after:g}s old"
        )
        return f"lock file {lock} exists ({age}; {who})"

    def _remove_if_stale(self, lock: Path) -> bool:
        """Remove a lock left by a dead git process: old enough, and no git process in the repository."""
        try:
            before = lock.stat()
        except FileNotFoundError:
            return True  # its holder finished meanwhile: just run again
        age = time.time() - before.st_mtime
        if age < self.stale_lock_after or _live_git_processes((self.path, self.git_dir())):
            return False
        try:
            now = lock.stat()
            if (now.st_ino, now.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
                return False  # a new holder took it between our two looks
            lock.unlink()
        except FileNotFoundError:
            return True
        log.warning(
            "removed stale git lock %s (%.0fs old, no git process running in %s)", lock, age, self.path
        )
        return True

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
        self.hook("committing")
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
            self._retried("merge", "--ff-only", "--quiet", self.remote_ref(branch))
        except (GitError, PushRejected) as err:
            self.last_checkout_problem = str(err)
            log.warning("working tree not moved to %s: %s", self.remote_ref(branch), err)
            return False
        self.last_checkout_problem = None
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
