"""The rollback the receiver and the watch loop run: ``GitOps.rollback`` with an optional apply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from rollout_policies.gitops.engine import GitOps, RollbackOutcome
from rollout_policies.gitops.seams import Applier


@dataclass
class GitRollback:
    """One commit with stable weights straight to main, then the traffic apply when an applier is set.

    ``GitOps.rollback`` is idempotent: stacks already at 0% candidate get no commit.
    """

    ops: GitOps
    applier: Applier | None = None

    def __call__(
        self, stacks: Sequence[str], *, reason: str, evidence: Sequence[str], now: datetime
    ) -> RollbackOutcome:
        return self.ops.rollback(stacks, reason=reason, now=now, evidence=evidence, applier=self.applier)
