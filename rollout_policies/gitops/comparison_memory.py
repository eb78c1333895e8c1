"""Where comparison gates' test states live between evaluations: in the deciding process's memory.

A comparison gate judges the whole stage from its start. The core hands back the test's state after
each evaluation (``core.gates.ComparisonState``), so the next evaluation feeds only the intervals
that arrived since. This keeps those states per stack, stage, stage start and metric. Nothing is
written anywhere: after a restart, or whenever a state does not match what the core is given (a
new stage start, other settings, a revised interval), the core replays the stage from its start,
which gives the same verdict.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rollout_policies.core.gates import ComparisonState, GateVerdict


@dataclass
class ComparisonMemory:
    """Comparison states per (stack, stage, stage start), each a map from metric id to state.

    One entry per stack: keeping a stack's states for a new stage or stage start drops the old
    ones, so the memory holds at most one stage per stack.
    """

    _kept: dict[str, tuple[str, datetime, dict[str, ComparisonState]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def states(self, stack: str, stage: str, stage_started_at: datetime) -> Mapping[str, ComparisonState]:
        """The states kept for this stack's stage and start (empty when there are none)."""
        with self._lock:
            kept = self._kept.get(stack)
            if kept is None or kept[0] != stage or kept[1] != stage_started_at:
                return {}
            return dict(kept[2])

    def keep(self, stack: str, stage: str, stage_started_at: datetime, gates: Iterable[GateVerdict]) -> None:
        """Keep the states the gate verdicts carry (a gate without one forgets its old state)."""
        states = {
            g.metric: g.comparison.state
            for g in gates
            if g.comparison is not None and g.comparison.state is not None
        }
        with self._lock:
            self._kept[stack] = (stage, stage_started_at, states)

    def forget(self, stack: str) -> None:
        with self._lock:
            self._kept.pop(stack, None)
