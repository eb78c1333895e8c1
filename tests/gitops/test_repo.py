"""Git plumbing on a real repository: transient failures retried within bounds, lasting ones reported."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gitops_fixtures import Remote, git

from rollout_policies.errors import UserError
from rollout_policies.gitops.repo import GitError, GitRepo, RetryPolicy, commit_message


def _lock_remote_tracking_ref(clone: Path) -> Path:
    # Another git process holding the ref's lock, as a concurrent `git fetch` would.
    lock = clone / ".git" / "refs" / "remotes" / "origin" / "main.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")
    return lock


def test_a_lock_held_for_a_moment_is_retried(remote: Remote) -> None:
    clone = remote.clone("a")
    other = remote.clone("b")
    git(other, "commit", "-q", "--allow-empty", "-m", "moves main")
    git(other, "push", "-q", "origin", "main")
    lock = _lock_remote_tracking_ref(clone)
    threading.Timer(0.3, lock.unlink).start()
    repo = GitRepo(clone, retry=RetryPolicy(attempts=6, seconds=20, first_wait=0.2))
    repo.fetch()
    assert repo.sha("refs/remotes/origin/main") == git(other, "rev-parse", "HEAD").strip()


def test_a_lock_that_stays_gives_up_within_bounds(remote: Remote) -> None:
    clone = remote.clone("a")
    other = remote.clone("b")
    git(other, "commit", "-q", "--allow-empty", "-m", "moves main")
    git(other, "push", "-q", "origin", "main")
    _lock_remote_tracking_ref(clone)
    repo = GitRepo(clone, retry=RetryPolicy(attempts=3, seconds=10, first_wait=0.01))
    with pytest.raises(GitError, match=r"gave up after 3 tries"):
        repo.fetch()


def test_commit_files_makes_one_commit_without_touching_the_working_tree(remote: Remote) -> None:
    clone = remote.clone("a")
    repo = GitRepo(clone)
    repo.fetch()
    base = repo.sha("refs/remotes/origin/main")
    assert base is not None
    message = commit_message("subject", ["body"], [("Rollout-Decision", "promote")])
    sha = repo.commit_files(base, {"Pulumi.prod-us.yaml": "config: {}\n"}, message)
    assert git(clone, "rev-parse", f"{sha}^").strip() == base
    assert git(clone, "status", "--porcelain") == ""
    assert git(clone, "show", f"{sha}:Pulumi.prod-us.yaml") == "config: {}\n"
    (commit,) = repo.trailers(sha, limit=1)
    assert commit.trailer("Rollout-Decision") == "promote"


def test_not_a_repository_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^--repo .*: not a git repository$"):
        GitRepo(tmp_path)


@pytest.mark.parametrize(
    ("stderr", "transient"),
    [
        ("fatal: path 'Pulumi.x.yaml' does not exist in '5bc8932502093cf871186a6690a2e5af0e821b6d'", False),
        ("fatal: path 'x' does not exist in '503503503503503503503503503503503503503a'", False),
        ("fatal: unable to access 'https://github.com/o/r/': The requested URL returned error: 503", True),
        ("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502", True),
    ],
    ids=["sha holding 502", "sha of 503s", "http 503", "http 502"],
)
def test_an_object_id_never_reads_as_an_http_error(tmp_path: Path, stderr: str, transient: bool) -> None:
    from rollout_policies.gitops.repo import TransientGitError

    git(tmp_path, "init", "-q")
    failure = GitRepo(tmp_path)._failure(("show", "x"), "", stderr, 128, None)
    assert isinstance(failure, TransientGitError) is transient
