"""Pending-apply records: a rollback that reached the remote but not yet the cluster, kept on disk.

A record is written after the rollback commit exists and before it is pushed, and removed once its
stacks are applied. Whatever kills the run in between (kill -9, a node lost, a failed apply), the
next run that can apply (``rollout rollback --apply``, ``rollout serve`` or ``rollout watch`` at
start) finds the record and makes the cluster serve what main says. A record whose commit never
reached main (killed before the push) is dropped. Records live in the clone's git directory, beside
the refs they describe, never in the working tree or in git history.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rollout_policies.gitops.stack_config import write_text_atomically


@dataclass(frozen=True)
class PendingApply:
    stack: str
    commit: str
    at: str  # when the rollback was decided, ISO 8601


class PendingApplies:
    """One JSON file per stack under ``<git dir>/rollout/pending-apply/``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, stack: str) -> Path:
        return self.directory / f"{stack}.json"

    def record(self, stacks: Iterable[str], commit: str, at: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for stack in stacks:
            text = json.dumps({"stack": stack, "commit": commit, "at": at}, sort_keys=True) + "\n"
            write_text_atomically(self._path(stack), text)

    def clear(self, stacks: Iterable[str], commit: str | None = None) -> None:
        """Remove the stacks' records (only those for ``commit`` when it is given)."""
        for stack in stacks:
            found = self.get(stack)
            if found is not None and (commit is None or found.commit == commit):
                self._path(stack).unlink(missing_ok=True)

    def get(self, stack: str) -> PendingApply | None:
        try:
            data = json.loads(self._path(stack).read_text(encoding="utf-8"))
            return PendingApply(str(data["stack"]), str(data["commit"]), str(data["at"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            # A record cut short cannot say which commit: treat it as "apply what main says".
            return PendingApply(stack, "", "")

    def all(self) -> dict[str, PendingApply]:
        if not self.directory.is_dir():
            return {}
        found = {}
        for path in sorted(self.directory.glob("*.json")):
            record = self.get(path.stem)
            if record is not None:
                found[record.stack] = record
        return found
