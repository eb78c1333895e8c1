"""Automatic rollback triggers: has a trigger's condition held, without a break, for its window?"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rollout_policies.core.durations import span
from rollout_policies.core.measurement import Evidence, Measurement, Phase, require_aware
from rollout_policies.core.ranges import judged
from rollout_policies.plan.model import Metric, Plan, Trigger, format_duration


class TriggerStatus(StrEnum):
    FIRED = "fired"  # the condition held for the whole window: roll back
    BREACHING = "breaching"  # the condition holds now, not yet for the whole window
    CLEAR = "clear"  # the newest fresh sample does not meet the condition
    UNKNOWN = "unknown"  # no fresh sample: cannot tell


@dataclass(frozen=True, slots=True)
class TriggerResult:
    id: str
    text: str
    metric: str
    status: TriggerStatus
    reason: str
    since: datetime | None = None  # when the current breach began


def evaluate_trigger(
    trigger: Trigger, metric: Metric, history: Sequence[Measurement], *, now: datetime
) -> TriggerResult:
    """Judge a trigger from the metric's timestamped measurements (any order; future ones ignored).

    The breach began at the oldest sample of the newest unbroken run of breaching samples. The run
    breaks at a sample that does not breach, or at a gap between samples longer than the source's
    max_age (nobody knows what happened in between). Error and no-data samples neither breach nor
    break a run. The trigger fires when the newest sample is fresh, breaches, and the breach began
    at least ``window`` ago; a zero window fires on the first breaching sample. An error newer than
    the newest sample cannot fire or hold off a rollback, but it does stop a ``clear``: the newest
    reading could not be judged (an impossible value, say), so the trigger is unknown.
    """
    require_aware(now, "now")

    def result(status: TriggerStatus, reason: str, since: datetime | None = None) -> TriggerResult:
        return TriggerResult(trigger.id, trigger.text, metric.id, status, reason, since)

    samples = sorted(
        (m for m in history if m.phase is Phase.OK and m.observed_at <= now), key=lambda m: m.observed_at
    )
    failed = max(
        (m for m in history if m.phase is Phase.ERROR and m.observed_at <= now),
        key=lambda m: m.observed_at,
        default=None,
    )
    if failed is not None and (not samples or failed.observed_at >= samples[-1].observed_at):
        failure = f"newest measurement of {metric.id} failed: {failed.message or 'unknown error'}"
    else:
        failure = None
    if not samples or now - samples[-1].observed_at > metric.source.max_age:
        if failure is not None:
            return result(TriggerStatus.UNKNOWN, failure)
        return result(
            TriggerStatus.UNKNOWN,
            f"no fresh measurement of {metric.id} (max age {format_duration(metric.source.max_age)})",
        )
    newest = samples[-1]
    assert newest.value is not None
    if not trigger.threshold.holds(newest.value):
        if failure is not None:
            return result(TriggerStatus.UNKNOWN, failure)
        return result(
            TriggerStatus.CLEAR, f"{metric.id} = {newest.value:g}, condition {trigger.threshold} clear"
        )
    since = newest.observed_at
    for earlier in reversed(samples[:-1]):
        assert earlier.value is not None
        if not trigger.threshold.holds(earlier.value) or since - earlier.observed_at > metric.source.max_age:
            break
        since = earlier.observed_at
    held = now - since
    if held >= trigger.window:
        return result(
            TriggerStatus.FIRED,
            f"{metric.id} {trigger.threshold} for {span(held)} (window {format_duration(trigger.window)})",
            since,
        )
    return result(
        TriggerStatus.BREACHING,
        f"{metric.id} {trigger.threshold} for {span(held)} of {format_duration(trigger.window)}",
        since,
    )


def evaluate_triggers(plan: Plan, evidence: Evidence, *, now: datetime) -> tuple[TriggerResult, ...]:
    """Every rollback trigger of the plan, in plan order (what ``rollout watch`` checks each tick).

    Readings outside their unit's range are errors and timestamp ties keep the worse reading
    (``core.ranges``), whichever source the evidence came from.
    """
    metrics = {metric.id: metric for metric in plan.metrics}
    evidence = judged(evidence, metrics)
    return tuple(
        evaluate_trigger(trigger, metrics[trigger.metric], evidence.history(trigger.metric), now=now)
        for trigger in plan.triggers
    )
