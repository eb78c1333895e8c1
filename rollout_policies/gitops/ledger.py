"""The last decision posted for each stack, kept in git so a scheduled run (a fresh process) sees it.

A HOLD that repeats the previous run's HOLD for the same reasons is not news; posting it every
half hour trains people to mute the channel. The ledger is a ref on the remote,
``refs/rollout/notified``: a chain of commits whose tree holds one file per stack with the
signature of the last decision posted. It is not a branch, so it opens no pull request, triggers no
workflow and needs no exception to main's protection; ``git log refs/rollout/notified`` is the
history of what was posted. A lost race (two runs at once) re-reads the ref and tries again, and a
failure to record only means the next run may post once more: never less.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from rollout_policies.gitops.repo import GitError, GitRepo, PushRejected, TransientGitError

LEDGER_REF = "refs/rollout/notified"
ATTEMPTS = 3
# git's well-known empty tree: the first ledger commit starts from nothing.
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@dataclass
class DecisionLedger:
    """Reads and records the signature of the last decision posted per stack, on ``repo``'s remote."""

    repo: GitRepo
    ref: str = LEDGER_REF

    @property
    def _local(self) -> str:
        # Fetched into a ref of our own, so a local checkout's refs are never touched.
        return f"refs/rollout-remote/{self.repo.remote}/notified"

    def _fetch(self) -> str | None:
        try:
            self.repo.git("fetch", "--quiet", self.repo.remote, f"+{self.ref}:{self._local}")
        except GitError as err:
            if "couldn't find remote ref" in str(err).lower():
                return None
            raise
        return self.repo.sha(self._local)

    def last(self, stack: str) -> str | None:
        """The signature last recorded for ``stack``, or None (never posted, or unreadable)."""
        try:
            head = self._fetch()
        except (GitError, TransientGitError):
            return None
        if head is None:
            return None
        text = self.repo.show(head, f"{stack}.decision")
        return text.strip() if text else None

    def record(self, stack: str, signature: str, message: str) -> bool:
        """Record ``signature`` for ``stack``; False when the remote could not be written."""
        for _ in range(ATTEMPTS):
            try:
                head = self._fetch()
                if (
                    head is not None
                    and (self.repo.show(head, f"{stack}.decision") or "").strip() == signature
                ):
                    return True
                sha = self._commit(head, stack, signature, message)
                lease = f"--force-with-lease={self.ref}:{head or ''}"
                self.repo.git("push", "--porcelain", "--quiet", lease, self.repo.remote, f"{sha}:{self.ref}")
                return True
            except PushRejected:
                continue
            except (GitError, TransientGitError):
                return False
        return False

    def _commit(self, head: str | None, stack: str, signature: str, message: str) -> str:
        with tempfile.TemporaryDirectory(prefix="rollout-ledger-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.repo.git("read-tree", head or EMPTY_TREE, env=env)
            blob = self.repo.git("hash-object", "-w", "--stdin", stdin=signature + "\n").strip()
            self.repo.git("update-index", "--add", "--cacheinfo", f"100644,{blob},{stack}.decision", env=env)
            tree = self.repo.git("write-tree", env=env).strip()
            parents = ["-p", head] if head else []
            return self.repo.git("commit-tree", tree, *parents, "-F", "-", stdin=message).strip()
