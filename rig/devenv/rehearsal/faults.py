"""Faults the rehearsal injects, named by stage and time: ``--faults 'beta+10%:api-errors,...'``.

A fault is ``STAGE[@STEP]+OFFSET:KIND[:REGION]``: OFFSET is the share of the stage's (scaled) length
after the stage began (``30%``) or a calendar duration (``1d``). KIND is one of ``KINDS``; REGION
defaults to every region (a region outage defaults to the secondary region). Each kind says what
the plan must do about it: roll back within the trigger's window, hold on missing data, or fail over.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rollout_policies.errors import UserError
from rollout_policies.plan.model import Plan, parse_duration

# kind -> (simulator faults on the candidate, the expected response, the trigger whose window applies)
KINDS: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "crash-burst": ({"crash_rate": 0.5}, "rollback", "crash-rate"),
    "api-errors": ({"error_rate": 0.5}, "rollback", "api-error-rate"),
    "lb-targets": ({"latency_ms": 1500.0}, "rollback", "load-balancer-failures"),
    "database-loss": ({"db_down": True}, "rollback", "database-connection-loss"),
    "latency": ({"latency_ms": 700.0}, "rollback", None),  # caught by the gates, not a trigger
    "silent-source": ({}, "hold", None),
    "region-outage": ({}, "failover", None),
}
DEFAULT_SPEC = "beta+5%:api-errors,limited@0+10%:database-loss:us-east-1"
_SPEC = re.compile(
    r"^(?P<stage>[a-z][a-z0-9_-]*)(?:@(?P<step>\d+))?\+(?P<offset>\d+(?:\.\d+)?%|\d+(?:\.\d+)?[smhdw])"
    r":(?P<kind>[a-z-]+)(?::(?P<region>[a-z0-9-]+))?$"
)


@dataclass(frozen=True)
class Fault:
    stage: str
    step: int | None
    offset: str  # "10%" of the stage, or a calendar duration
    kind: str
    region: str | None = None

    @property
    def response(self) -> str:
        return KINDS[self.kind][1]

    @property
    def trigger(self) -> str | None:
        return KINDS[self.kind][2]

    @property
    def injection(self) -> dict[str, Any]:
        return dict(KINDS[self.kind][0])

    def delay(self, stage_length: timedelta) -> timedelta:
        """Calendar time after the stage (or step) began when the fault starts."""
        if self.offset.endswith("%"):
            return stage_length * (float(self.offset[:-1]) / 100)
        return parse_duration(self.offset)

    def label(self) -> str:
        where = self.stage + (f"@{self.step}" if self.step is not None else "")
        return f"{self.kind} at {where}+{self.offset}" + (f" in {self.region}" if self.region else "")


@dataclass
class FaultRecord:
    """What happened to one fault: when it began, was seen, answered, and whether in time."""

    fault: Fault
    region: str
    injected_at: float | None = None  # wall seconds since the rehearsal's start
    detected_at: float | None = None  # the trigger's alert firing, or the hold's first report
    responded_at: float | None = None  # the rollback commit on main, the hold, the failover
    stable_at: float | None = None  # stable weights live on the API server
    cleared_at: float | None = None
    window_seconds: float | None = None  # the plan's window (scaled), plus the detection budget
    detail: str = ""
    ok: bool | None = None
    commit: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fault": self.fault.label(),
            "kind": self.fault.kind,
            "stage": self.fault.stage,
            "region": self.region,
            "response": self.fault.response,
            "trigger": self.fault.trigger,
            "injected_at": self.injected_at,
            "detected_at": self.detected_at,
            "responded_at": self.responded_at,
            "stable_at": self.stable_at,
            "cleared_at": self.cleared_at,
            "detection_seconds": _diff(self.detected_at, self.injected_at),
            "rollback_seconds": _diff(self.stable_at, self.injected_at),
            "window_seconds": self.window_seconds,
            "ok": self.ok,
            "detail": self.detail,
            "commit": self.commit,
            "notes": list(self.notes),
        }


def _diff(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else round(later - earlier, 2)


def parse_faults(spec: str, plan: Plan, regions: tuple[str, ...]) -> tuple[Fault, ...]:
    """``--faults`` text to faults; one clear error naming the bad item."""
    faults = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        if item == "none":
            continue
        match = _SPEC.match(item)
        if not match:
            raise UserError(
                f"--faults {item!r}: write STAGE[@STEP]+OFFSET:KIND[:REGION], e.g. beta+10%:api-errors"
            )
        stage, kind, region = match["stage"], match["kind"], match["region"]
        try:
            plan_stage = plan.stage(stage)
        except (KeyError, UserError):  # the plan's own "unknown stage" error; the item is named here
            known = ", ".join(s.id for s in plan.stages)
            raise UserError(f"--faults {item!r}: no stage {stage!r} in the plan (stages: {known})") from None
        if kind not in KINDS:
            raise UserError(f"--faults {item!r}: unknown fault {kind!r} (known: {', '.join(KINDS)})")
        step = int(match["step"]) if match["step"] is not None else None
        if step is not None and step >= len(plan_stage.steps):
            raise UserError(f"--faults {item!r}: stage {stage} has steps 0..{len(plan_stage.steps) - 1}")
        if region is not None and region not in regions:
            raise UserError(f"--faults {item!r}: no region {region!r} (regions: {', '.join(regions)})")
        if kind == "region-outage" and region is None:
            region = regions[-1]  # the secondary region goes dark; the primary takes its users
        faults.append(Fault(stage, step, match["offset"], kind, region))
    return tuple(faults)
